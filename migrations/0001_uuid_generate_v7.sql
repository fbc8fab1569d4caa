-- uuid_generate_v7(): RFC 9562 UUID version 7.
--
-- Layout: 48-bit Unix timestamp in milliseconds | version nibble 7 |
-- 12-bit rand_a used as a sub-millisecond counter | variant bits 10 |
-- 62 random bits. Monotonic within a session: the last (ms, counter) pair
-- is kept in the session setting tasker.uuidv7_last; a value generated in
-- the same (or an earlier, clock went back) millisecond reuses that
-- millisecond and increments the counter; when the counter overflows the
-- timestamp is advanced by one millisecond.
--
-- The tasker-postgres image ships a function of the same name; CREATE OR
-- REPLACE makes a plain PostgreSQL + PGMQ server work as well.
CREATE OR REPLACE FUNCTION uuid_generate_v7() RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
DECLARE
    now_ms  bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    last    text   := current_setting('tasker.uuidv7_last', true);
    last_ms bigint;
    counter integer;
    bytes   bytea;
BEGIN
    IF last IS NOT NULL AND last <> '' THEN
        last_ms := split_part(last, ':', 1)::bigint;
        counter := split_part(last, ':', 2)::integer;
    END IF;

    IF last_ms IS NOT NULL AND now_ms <= last_ms THEN
        now_ms := last_ms;
        counter := counter + 1;
        IF counter > 4095 THEN
            now_ms := now_ms + 1;
            counter := 0;
        END IF;
    ELSE
        -- fresh millisecond: start in the lower half to leave room to count
        counter := floor(random() * 2048)::integer;
    END IF;

    PERFORM set_config('tasker.uuidv7_last', now_ms::text || ':' || counter::text, false);

    -- gen_random_uuid() is a v4 UUID: its variant bits are already 10 and the
    -- rest is random; overwrite timestamp, version and counter.
    bytes := uuid_send(gen_random_uuid());
    bytes := overlay(bytes PLACING substring(int8send(now_ms) FROM 3) FROM 1 FOR 6);
    bytes := set_byte(bytes, 6, (112 | (counter >> 8)));
    bytes := set_byte(bytes, 7, (counter & 255));
    RETURN encode(bytes, 'hex')::uuid;
END
$$;
