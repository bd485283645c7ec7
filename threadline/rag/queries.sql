-- The SQL of threadline.rag: collections and documents (documents.py), hybrid retrieval
-- (retrieval.py) and the semantic cache (cache/entries.py). Each statement follows its
-- `-- name:` line (see threadline/db/sqlfiles.py).

-- ---------------------------------------------------------------------------------------
-- Collections and documents
-- ---------------------------------------------------------------------------------------

-- name: open_collection
-- The tenant's collection, created on first use, and the embedder its vectors come from.
INSERT INTO threadline.rag_collections (tenant, name, embedder) VALUES ($1, $2, $3)
ON CONFLICT (tenant, name) DO UPDATE SET name = $2
RETURNING id, embedder

-- name: collections
SELECT id, name, tenant, embedder FROM threadline.rag_collections
WHERE tenant = $1 ORDER BY name

-- name: drop_collection
DELETE FROM threadline.rag_collections WHERE id = $1

-- name: document_version
-- A document ingested before pieces were embedded counts as changed, once.
SELECT id, content_hash,
       EXISTS (SELECT FROM threadline.rag_chunks c
               JOIN threadline.rag_pieces p ON p.chunk_id = c.id
               WHERE c.document_id = d.id) AS has_pieces
FROM threadline.rag_documents d WHERE collection_id = $1 AND source = $2

-- name: upsert_document
INSERT INTO threadline.rag_documents
    (collection_id, source, title, kind, content_hash, metadata)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
ON CONFLICT (collection_id, source) DO UPDATE
   SET title = EXCLUDED.title, kind = EXCLUDED.kind, content_hash = EXCLUDED.content_hash,
       metadata = EXCLUDED.metadata, version = rag_documents.version + 1, updated_at = now()
RETURNING id, version

-- name: delete_chunks
DELETE FROM threadline.rag_chunks WHERE document_id = $1

-- name: insert_chunk
INSERT INTO threadline.rag_chunks
    (document_id, collection_id, ordinal, heading, content, page, embedding)
VALUES ($1, $2, $3, $4, $5, $6, $7::real[]::vector)
RETURNING id

-- name: insert_piece
INSERT INTO threadline.rag_pieces (chunk_id, collection_id, embedding)
VALUES ($1, $2, $3::real[]::vector)

-- name: documents
SELECT d.*, (SELECT count(*) FROM threadline.rag_chunks c WHERE c.document_id = d.id) AS chunks
FROM threadline.rag_documents d WHERE collection_id = $1 ORDER BY source

-- name: delete_document
DELETE FROM threadline.rag_documents WHERE collection_id = $1 AND source = $2
RETURNING id

-- ---------------------------------------------------------------------------------------
-- Retrieval
-- ---------------------------------------------------------------------------------------

-- name: iterative_scan
-- Filtered HNSW scans keep going until enough rows pass the filter (pgvector 0.8).
SET LOCAL hnsw.iterative_scan = relaxed_order

-- name: search
-- $1 collection ids, $2 the question's vector, $3 the question, $4 candidates per ranking,
-- $5 rank by vector, $6 rank by full text, $7 the question's identifiers, $8 the text
-- weight, $9 how many passages.
-- BM25 with its usual constants, k1 = 1.2 (how fast a word's evidence saturates) and b = 0.75
-- (how much a longer chunk is discounted, against the average of the chunks that match); a
-- word counts 2 in the heading (weight A) and 1 in the body (B), however often it recurs.
WITH q AS (
    SELECT array_agg(l) AS words,
           CASE WHEN count(*) = 0 THEN NULL ELSE
               array_to_string(array_agg(quote_literal(l)), ' | ')::tsquery END AS any_word,
           tsvector_to_array(to_tsvector('english', $7)) AS ids
      FROM unnest(tsvector_to_array(to_tsvector('english', $3))) l
), near AS (
    -- the chunks nearest the question, by their own vector or by one of their pieces'
    SELECT id FROM (SELECT id FROM threadline.rag_chunks
                     WHERE collection_id = ANY($1::bigint[]) AND $5
                     ORDER BY embedding <=> $2::real[]::vector LIMIT $4) by_chunk
    UNION
    SELECT chunk_id FROM (SELECT chunk_id FROM threadline.rag_pieces
                           WHERE collection_id = ANY($1::bigint[]) AND $5
                           ORDER BY embedding <=> $2::real[]::vector LIMIT $4) by_piece
), v AS (
    SELECT id, row_number() OVER (ORDER BY similarity DESC, id) AS r
      FROM near JOIN threadline.rag_chunks c USING (id), LATERAL (
           SELECT (2 - (c.embedding <=> $2::real[]::vector)
                   - COALESCE(min(p.embedding <=> $2::real[]::vector),
                              c.embedding <=> $2::real[]::vector)) / 2 AS similarity
             FROM threadline.rag_pieces p WHERE p.chunk_id = c.id) s
     ORDER BY r LIMIT $4
), m AS MATERIALIZED (
    -- each chunk holding a word of the question, with a copy of its tsvector (all of it:
    -- headings are A, bodies B), so that the stored one is read and decompressed once
    SELECT c.id, ts_filter(c.tsv, '{a,b}') AS tsv
      FROM threadline.rag_chunks c, q
     WHERE $6 AND c.collection_id = ANY($1::bigint[]) AND c.tsv @@ q.any_word
), h AS (
    SELECT m.id, length(m.tsv)::float8 AS terms, word,
           2 * (m.tsv @@ (quote_literal(word) || ':A')::tsquery)::int
           + (m.tsv @@ (quote_literal(word) || ':B')::tsquery)::int AS tf
      FROM m, q, unnest(q.words) word
     WHERE m.tsv @@ quote_literal(word)::tsquery
), w AS (
    SELECT word, ln(1 + (n.chunks - count(*) + 0.5) / (count(*) + 0.5)) AS idf
      FROM h, (SELECT count(*)::float8 AS chunks FROM threadline.rag_chunks
                WHERE collection_id = ANY($1::bigint[])) n
     GROUP BY word, n.chunks
), t AS (
    SELECT id, bm25, has_ids, row_number() OVER (ORDER BY has_ids DESC, bm25 DESC, id) AS r
      FROM (SELECT h.id,
                   sum(w.idf * h.tf * 2.2 / (h.tf + 1.2 * (0.25 + 0.75 * h.terms / a.terms)))
                   / (2.2 * (SELECT sum(idf) FROM w)) AS bm25,
                   cardinality(q.ids) > 0 AND q.ids <@ array_agg(h.word) AS has_ids
              FROM h JOIN w USING (word), q,
                   (SELECT avg(terms) AS terms FROM (SELECT DISTINCT id, terms FROM h) matched) a
             GROUP BY h.id, q.ids) scored
     ORDER BY r LIMIT $4
)
SELECT c.id, c.content, c.heading, c.page, d.id AS document_id, d.source, d.title,
       d.content_hash, v.r AS vector_rank, t.r AS text_rank, p.piece AS closest_piece,
       CASE WHEN $5 THEN (1 - (c.embedding <=> $2::real[]::vector) + COALESCE(p.piece,
                          1 - (c.embedding <=> $2::real[]::vector))) / 2 ELSE 0 END
       + CASE WHEN $5 THEN $8::float8 ELSE 1 END * COALESCE(t.bm25 + t.has_ids::int, 0) AS score
  FROM v FULL JOIN t USING (id)
  JOIN threadline.rag_chunks c ON c.id = COALESCE(v.id, t.id)
  JOIN threadline.rag_documents d ON d.id = c.document_id
  LEFT JOIN LATERAL (
       SELECT max(1 - (p.embedding <=> $2::real[]::vector)) AS piece
         FROM threadline.rag_pieces p WHERE $5 AND p.chunk_id = c.id) p ON true
 ORDER BY score DESC, v.r NULLS LAST, t.r NULLS LAST, c.id
 LIMIT $9

-- ---------------------------------------------------------------------------------------
-- The semantic cache
-- ---------------------------------------------------------------------------------------

-- name: exact_entry
-- The scope's live entry for this (normalised) prompt.
SELECT id, prompt, answer, provider, model, input_tokens, output_tokens, cost_usd
FROM threadline.cache_entries
WHERE scope_key = $1 AND prompt_hash = $2 AND (expires_at IS NULL OR expires_at > now())

-- name: nearest_entries
SELECT * FROM threadline.cache_nearest($1, $2::real[]::halfvec, $3, $4)

-- name: lookup_entries
SELECT * FROM threadline.cache_lookup($1, $2, $3::real[]::halfvec, $4, $5)

-- name: entry_answer
SELECT id, prompt, answer, provider, model, input_tokens, output_tokens, cost_usd
FROM threadline.cache_entries
WHERE id = $1 AND (expires_at IS NULL OR expires_at > now())

-- name: count_hits
-- Entries deleted since their hits were counted are skipped (their counters went with them).
INSERT INTO threadline.cache_hits AS h (entry_id, hits, saved_usd, last_hit_at)
SELECT c.id, c.n, c.saved, now()
FROM unnest($1::bigint[], $2::bigint[], $3::numeric[]) AS c(id, n, saved)
WHERE EXISTS (SELECT 1 FROM threadline.cache_entries e WHERE e.id = c.id)
ORDER BY c.id
ON CONFLICT (entry_id) DO UPDATE
   SET hits = h.hits + EXCLUDED.hits, saved_usd = h.saved_usd + EXCLUDED.saved_usd,
       last_hit_at = EXCLUDED.last_hit_at

-- name: put_entry
INSERT INTO threadline.cache_entries
    (scope_key, scope, prompt, prompt_hash, embedding, answer, provider, model,
     input_tokens, output_tokens, cost_usd, expires_at)
VALUES ($1, $2::jsonb, $3, $4, $5::real[]::halfvec, $6, $7, $8, $9, $10, $11, now() + $12::interval)
ON CONFLICT (scope_key, prompt_hash) DO UPDATE
   SET prompt = EXCLUDED.prompt, embedding = EXCLUDED.embedding, answer = EXCLUDED.answer,
       provider = EXCLUDED.provider, model = EXCLUDED.model,
       input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
       cost_usd = EXCLUDED.cost_usd, created_at = now(), expires_at = EXCLUDED.expires_at
RETURNING id

-- name: set_entry_sources
UPDATE threadline.cache_entries SET sources = $2::jsonb WHERE id = $1

-- name: forget_entry_documents
DELETE FROM threadline.cache_entry_documents WHERE entry_id = $1

-- name: add_entry_document
INSERT INTO threadline.cache_entry_documents VALUES ($1, $2, $3) ON CONFLICT DO NOTHING

-- name: entry_sources
SELECT sources::text FROM threadline.cache_entries WHERE id = $1

-- name: lock_documents
-- FOR SHARE: a concurrent change of these documents waits for this transaction, and its
-- trigger then drops the entry written here.
SELECT id, content_hash FROM threadline.rag_documents WHERE id = ANY($1::bigint[]) FOR SHARE

-- name: list_entries
-- Newest first. $1 scope key, $2 tenant, $3 agent, $4 entry id (each NULL: any), $5 only
-- expired entries, $6 how many.
SELECT e.*, coalesce(h.hits, 0) AS hits, coalesce(h.saved_usd, 0) AS saved_usd,
       ARRAY(SELECT document_id FROM threadline.cache_entry_documents d
             WHERE d.entry_id = e.id ORDER BY 1) AS documents
FROM threadline.cache_entries e
LEFT JOIN threadline.cache_hits h ON h.entry_id = e.id
WHERE ($1::text IS NULL OR e.scope_key = $1) AND ($2::text IS NULL OR e.scope->>'tenant' = $2)
  AND ($3::text IS NULL OR e.scope->>'agent' = $3) AND ($4::bigint IS NULL OR e.id = $4)
  AND (NOT $5::bool OR e.expires_at <= now())
ORDER BY e.id DESC LIMIT $6

-- name: delete_entries
-- $1..$5 as in list_entries.
DELETE FROM threadline.cache_entries e
WHERE ($1::text IS NULL OR e.scope_key = $1) AND ($2::text IS NULL OR e.scope->>'tenant' = $2)
  AND ($3::text IS NULL OR e.scope->>'agent' = $3) AND ($4::bigint IS NULL OR e.id = $4)
  AND (NOT $5::bool OR e.expires_at <= now())
