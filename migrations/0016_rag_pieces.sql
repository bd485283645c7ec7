-- A vector per sentence, list item or table row of a chunk (with its heading): a short piece
-- ("Size: 38 x 16 x 42 cm") is what a short question is near, not diluted by the rest of its
-- chunk. Retrieval scores a chunk by the mean of its own cosine and its closest piece's.
CREATE TABLE threadline.rag_pieces (
    chunk_id      bigint NOT NULL REFERENCES threadline.rag_chunks ON DELETE CASCADE,
    collection_id bigint NOT NULL,
    embedding     vector(384) NOT NULL
);
CREATE INDEX rag_pieces_chunk ON threadline.rag_pieces (chunk_id);
CREATE INDEX rag_pieces_collection ON threadline.rag_pieces (collection_id);
CREATE INDEX rag_pieces_embedding ON threadline.rag_pieces USING hnsw (embedding vector_cosine_ops);
