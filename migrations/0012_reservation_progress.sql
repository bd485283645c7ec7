-- What a reservation's call had streamed, so that recovery (its process died mid-stream)
-- charges the tokens seen instead of the worst case: input_seen at the input's price
-- (fixed_usd / input_tokens) plus output_seen at token_usd, never more than amount_usd.
ALTER TABLE threadline.budget_reservations
    ADD COLUMN fixed_usd   numeric(20, 10),  -- its input's part of amount_usd (input_tokens' cost)
    ADD COLUMN token_usd   numeric(20, 10),  -- the price it reserved per output token
    ADD COLUMN input_seen  integer,          -- input tokens: the provider's count, else estimated
    ADD COLUMN output_seen integer;          -- output tokens its holder last reported seen
