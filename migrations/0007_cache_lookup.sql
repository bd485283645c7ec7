-- A semantic-cache lookup in one round trip, for embedders that cost microseconds (the
-- question's vector is at hand before the exact match is known): the live exact match of
-- the scope if there is one, else the nearest neighbours as cache_nearest gives them.
CREATE FUNCTION threadline.cache_lookup(p_scope text, p_hash text, p_vector halfvec,
                                        p_k integer, p_min_cosine double precision)
RETURNS TABLE (exact boolean, id bigint, prompt text, cosine double precision, answer text,
               provider text, model text, input_tokens integer, output_tokens integer,
               cost_usd numeric)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY
    SELECT true, e.id, e.prompt, 1.0::double precision, e.answer, e.provider, e.model,
           e.input_tokens, e.output_tokens, e.cost_usd
      FROM threadline.cache_entries e
     WHERE e.scope_key = p_scope AND e.prompt_hash = p_hash
       AND (e.expires_at IS NULL OR e.expires_at > now());
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT false, n.* FROM threadline.cache_nearest(p_scope, p_vector, p_k, p_min_cosine) n;
END
$$;
