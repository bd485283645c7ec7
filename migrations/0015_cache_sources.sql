-- What a cached answer's [n] markers cite: a hit shows the same sources as the answer did.
ALTER TABLE threadline.cache_entries ADD COLUMN sources jsonb NOT NULL DEFAULT '[]';
