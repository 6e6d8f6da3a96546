-- What the connector last wrote to (or read back from) the NetSuite customer of each link: per
-- field, a SHA-256 of its canonical JSON. A customer.updated whose fields all match costs no
-- NetSuite request. NULL (links made before this migration, or matched and never written): the
-- customer is read once, compared, and the fingerprint stored. It belongs to the NetSuite record
-- of the link: relinking to another record clears it.
ALTER TABLE customer_links ADD COLUMN fingerprint TEXT;
