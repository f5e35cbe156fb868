-- List's keyset page as the store writes it: 100 asked, one more fetched to learn has_more.
SELECT id, name, email, phone, notes, external_id, banned, created, version FROM visitors WHERE id > :after ORDER BY id ASC LIMIT 101;
