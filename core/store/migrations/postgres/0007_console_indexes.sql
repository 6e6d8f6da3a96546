-- The operator console: the latest error of each kind is found by step without scanning the whole
-- audit log, and an event is found by the NetSuite record it produced.
CREATE INDEX audit_step ON audit (step, id);
CREATE INDEX postings_netsuite_id ON postings (netsuite_internal_id);
CREATE INDEX postings_external_id ON postings (external_id);
