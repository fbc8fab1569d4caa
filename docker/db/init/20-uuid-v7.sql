-- uuid_generate_v7(): RFC 9562 layout. 48-bit Unix ms timestamp, version nibble 7, 12 bits of
-- sub-millisecond fraction in rand_a (so values sort by time), variant 10, 62 random bits.
-- Monotonic within a session: if the clock has not moved past the last value this session made,
-- the previous (ms, fraction) counter is incremented instead; a session GUC holds it.
CREATE OR REPLACE FUNCTION uuid_generate_v7() RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
  now_us bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
  stamp  bigint := (now_us / 1000) * 4096 + ((now_us % 1000) * 4096) / 1000;
  last   bigint := coalesce(nullif(current_setting('tasker.uuid_v7_last', true), '')::bigint, 0);
  tail   bytea  := substring(uuid_send(gen_random_uuid()) FROM 9 FOR 8);
BEGIN
  IF stamp <= last THEN
    stamp := last + 1;
  END IF;
  PERFORM set_config('tasker.uuid_v7_last', stamp::text, false);
  tail := set_byte(tail, 0, 128 | (get_byte(tail, 0) & 63));  -- variant 10
  RETURN encode(
    substring(int8send(stamp / 4096) FROM 3 FOR 6)             -- 48-bit ms timestamp
    || decode(lpad(to_hex(28672 + (stamp % 4096)), 4, '0'), 'hex')  -- 0x7 version + 12 bits
    || tail,
    'hex')::uuid;
END
$$;
