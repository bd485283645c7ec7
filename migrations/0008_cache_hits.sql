-- The semantic cache's hit counters, apart from the entries. An entry's row carries its
-- vector, and its pages are full, so an update of it is rarely HOT: counting a hit wrote a
-- new copy of the row into every index, the HNSW graph included (the dead copy stayed there
-- until vacuum), beside the lookups it should not slow. Here a count is a narrow row update.
CREATE TABLE threadline.cache_hits (
    entry_id    bigint PRIMARY KEY REFERENCES threadline.cache_entries ON DELETE CASCADE,
    hits        bigint NOT NULL DEFAULT 0,
    saved_usd   numeric(20, 10) NOT NULL DEFAULT 0,
    last_hit_at timestamptz
);

INSERT INTO threadline.cache_hits (entry_id, hits, saved_usd, last_hit_at)
SELECT id, hits, saved_usd, last_hit_at FROM threadline.cache_entries WHERE hits > 0;

ALTER TABLE threadline.cache_entries
    DROP COLUMN hits, DROP COLUMN saved_usd, DROP COLUMN last_hit_at;
