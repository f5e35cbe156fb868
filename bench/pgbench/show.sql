\set id random(1, :ids)
SELECT id, name, email, phone, notes, external_id, banned, created, version FROM visitors WHERE id = :id;
