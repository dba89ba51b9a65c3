pragma circom 2.1.0;

// The zk_batch_prover circuit: the task records of one checkpoint link the session's previous proved
// root to its new one, and their fees add up to what the checkpoint says was charged.
//
//   elements = [count, rec_1, fee_1, ..., rec_N, fee_N], zero-padded to a multiple of 15
//   root_0   = prevRoot
//   root_k   = Poseidon(root_{k-1}, elements[15(k-1)] .. elements[15k - 1])   (a 16-input sponge)
//   newRoot  = root_K
//
// rec_i is the task-log entry hash of task i (keccak256, reduced modulo the BN254 scalar field) and
// fee_i the AGPT base units it was charged. Slots at and after `count` must be zero, so one proof
// covers 1..N tasks and a padded slot can neither carry a fee nor stand for a task.
// Public: prevRoot, newRoot, spentBefore, spentAfter, count (in that order: snarkjs's pubSignals).

include "circomlib/circuits/poseidon.circom";

template BatchChain(N) {
    signal input prevRoot;
    signal input newRoot;
    signal input spentBefore;
    signal input spentAfter;
    signal input count;
    signal input records[N];
    signal input fees[N];

    // which slots hold a task: used[0..count-1] = 1, the rest 0 (binary, non-increasing, summing to
    // count, used[0] = 1), so 1 <= count <= N; records and fees at unused slots are zero
    signal used[N];
    var usedSum = 0;
    for (var i = 0; i < N; i++) {
        used[i] <-- i < count ? 1 : 0;
        used[i] * (1 - used[i]) === 0;
        if (i > 0) {
            used[i] * (1 - used[i - 1]) === 0;
        }
        usedSum += used[i];
        records[i] * (1 - used[i]) === 0;
        fees[i] * (1 - used[i]) === 0;
    }
    used[0] === 1;
    usedSum === count;

    // the fees add up to what was charged
    var total = 0;
    for (var i = 0; i < N; i++) {
        total += fees[i];
    }
    spentAfter === spentBefore + total;

    // the sponge
    var E = 1 + 2 * N;
    var K = (E + 14) \ 15;
    signal elements[K * 15];
    elements[0] <== count;
    for (var i = 0; i < N; i++) {
        elements[1 + 2 * i] <== records[i];
        elements[2 + 2 * i] <== fees[i];
    }
    for (var j = E; j < K * 15; j++) {
        elements[j] <== 0;
    }
    component h[K];
    for (var k = 0; k < K; k++) {
        h[k] = Poseidon(16);
        h[k].inputs[0] <== k == 0 ? prevRoot : h[k - 1].out;
        for (var j = 0; j < 15; j++) {
            h[k].inputs[1 + j] <== elements[15 * k + j];
        }
    }
    newRoot === h[K - 1].out;
}

component main {public [prevRoot, newRoot, spentBefore, spentAfter, count]} = BatchChain(44);
