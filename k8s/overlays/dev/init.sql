-- Run once by the postgres image on an empty data directory; the services create their own tables.
CREATE DATABASE sessions;
CREATE DATABASE indexer;
CREATE DATABASE recoveries;
