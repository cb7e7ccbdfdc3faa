#!lua name=coursestream
--
-- The coursestream function library: the one place where course events are
-- validated, numbered, stored and announced in Redis. The Go service loads it
-- with FUNCTION LOAD REPLACE (observer/redis_lib.go) after writing its limits
-- into the __NAME__ placeholders below; backends call
--
--   FCALL coursestream_publish 1 <courseId> <type> <data JSON> [<operationId>]
--
-- The validation mirrors observer.Message.Normalize and observer.NewEvent in Go
-- (a Go test compares them input by input). cjson is not used: it accepts
-- NaN, Infinity, hex numbers and more that JSON does not, and it would
-- re-encode the data, which the contract forbids.
--
-- Keys of a course share the hash tag {<courseId>}, so on Redis Cluster the
-- declared key (the course id itself) and every key touched hash to one slot.

local HISTORY = __HISTORY__             -- events kept per course (MAXLEN ~)
local HISTORY_TTL_MS = __HISTORY_TTL_MS__ -- history dropped after this long idle
local MAX_EVENT_BYTES = __MAX_EVENT_BYTES__ -- largest envelope accepted
local PUBLISH = '__PUBLISH__'           -- PUBLISH, or SPUBLISH on a Cluster
local CONFIG = '__CONFIG__'             -- what this library was built with
-- Go's encoding/json refuses nesting deeper than 10000; the envelope adds
-- one level around the data, so data may nest 9999 deep for the stored
-- envelope to stay readable by every instance (observer.ParseEnvelope).
local MAX_DEPTH = 9999
local MAX_OPERATION_ID = 128            -- characters
local PREFIX = 'ERR coursestream: '

-- Only the redis API exists while the library loads: the string and math
-- libraries are looked up when a function runs.

local function fail(msg)
  return redis.error_reply(PREFIX .. msg)
end

-- short keeps error messages bounded, as observer.truncate does.
local function short(s)
  if #s <= 64 then return s end
  return string.sub(s, 1, 64) .. '...'
end

local function seq_key(id) return 'coursestream:{' .. id .. '}:seq' end
local function history_key(id) return 'coursestream:{' .. id .. '}:history' end
local function channel(id) return 'coursestream:{' .. id .. '}:events' end

local function valid_course(s)
  return #s >= 1 and #s <= 128 and string.find(s, '^[A-Za-z0-9][A-Za-z0-9_.:%-]*$') ~= nil
end

local function valid_type(s)
  return #s >= 1 and #s <= 64 and string.find(s, '^[a-z0-9][a-z0-9._%-]*$') ~= nil
end

-- utf8_seq returns the length of the UTF-8 sequence at p if it is one Go's
-- utf8.Valid accepts (no overlong forms, no surrogates, nothing above
-- U+10FFFF), else nil.
local function utf8_seq(s, p)
  local c, c2, c3, c4 = string.byte(s, p, p + 3)
  if c >= 0xC2 and c <= 0xDF then
    if c2 and c2 >= 0x80 and c2 <= 0xBF then return 2 end
  elseif c >= 0xE0 and c <= 0xEF then
    local lo, hi = 0x80, 0xBF
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    if c2 and c2 >= lo and c2 <= hi and c3 and c3 >= 0x80 and c3 <= 0xBF then return 3 end
  elseif c >= 0xF0 and c <= 0xF4 then
    local lo, hi = 0x80, 0xBF
    if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    if c2 and c2 >= lo and c2 <= hi and c3 and c3 >= 0x80 and c3 <= 0xBF
      and c4 and c4 >= 0x80 and c4 <= 0xBF then return 4 end
  end
  return nil
end

local function valid_utf8(s)
  local i = 1
  while true do
    local p = string.find(s, '[\128-\255]', i)
    if not p then return true end
    local n = utf8_seq(s, p)
    if not n then return false end
    i = p + n
  end
end

-- utf8_len counts the characters of valid UTF-8.
local function utf8_len(s)
  local _, cont = string.gsub(s, '[\128-\191]', '')
  return #s - cont
end

-- blank tells whether Go's bytes.TrimSpace leaves nothing of s: ASCII
-- whitespace and the Unicode White_Space characters.
local function blank(s)
  local p = string.find(s, '[^ \t\n\v\f\r]')
  if not p then return true end
  if string.byte(s, p) < 0x80 then return false end
  local t = string.gsub(s, '[ \t\n\v\f\r]', '')
  t = string.gsub(t, '\194[\133\160]', '')          -- U+0085, U+00A0
  t = string.gsub(t, '\225\154\128', '')            -- U+1680
  t = string.gsub(t, '\226\128[\128-\138\168\169\175]', '') -- U+2000-200A, U+2028, U+2029, U+202F
  t = string.gsub(t, '\226\129\159', '')            -- U+205F
  t = string.gsub(t, '\227\128\128', '')            -- U+3000
  return t == ''
end

-- scan_string returns the index after the JSON string that starts at i (a
-- quote), or nil and why. Like Go's scanner it checks escapes and refuses
-- control characters; it also checks the UTF-8 of the string (bytes above
-- 127 are invalid anywhere else in JSON). Lua patterns cost about 10ns a
-- byte, so the data is read in one pass: runs of plain ASCII at once, the
-- rest byte by byte.
local function scan_string(s, i)
  i = i + 1
  while true do
    local _, e = string.find(s, '^[^"\\%c\128-\255]*', i)
    local p = e + 1
    local c = string.byte(s, p)
    if not c then return nil, 'json' end
    if c == 34 then return p + 1 end
    if c == 92 then
      local d = string.byte(s, p + 1)
      if d == 117 then -- \uXXXX
        if not string.find(s, '^[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]', p + 2) then return nil, 'json' end
        i = p + 6
      elseif d == 34 or d == 92 or d == 47 or d == 98 or d == 102 or d == 110 or d == 114 or d == 116 then
        i = p + 2
      else
        return nil, 'json'
      end
    elseif c >= 128 then
      local n = utf8_seq(s, p)
      if not n then return nil, 'utf8' end
      i = p + n
    elseif c == 127 then -- %c includes DEL; JSON allows it
      i = p + 1
    else
      return nil, 'json'
    end
  end
end

-- scan_number returns the index after the JSON number at i, or nil:
-- -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
local function scan_number(s, i)
  local _, e = string.find(s, '^-?0', i)
  if not e then _, e = string.find(s, '^-?[1-9][0-9]*', i) end
  if not e then return nil end
  i = e + 1
  _, e = string.find(s, '^%.[0-9]+', i)
  if e then i = e + 1 end
  _, e = string.find(s, '^[eE][+-]?[0-9]+', i)
  if e then i = e + 1 end
  return i
end

local function skip_ws(s, i)
  local _, e = string.find(s, '^[ \t\n\r]*', i)
  return e + 1
end

-- valid_json tells whether s is exactly one JSON value (RFC 8259, as Go's
-- json.Valid) in valid UTF-8, surrounding whitespace allowed; when not, it
-- also answers why: 'utf8' or 'json'. It is iterative: the depth limit is
-- Go's, not the Lua stack's.
local function valid_json(s)
  local n = #s
  local i = 1
  local stack, depth = {}, 0
  while true do
    -- A value starts at i.
    i = skip_ws(s, i)
    local c = string.byte(s, i)
    local done = false -- a complete value ends before i
    if c == 123 or c == 91 then -- { or [
      depth = depth + 1
      if depth > MAX_DEPTH then return false end
      stack[depth] = c
      i = skip_ws(s, i + 1)
      local d = string.byte(s, i)
      if c == 123 then
        if d == 125 then
          i, depth, done = i + 1, depth - 1, true
        else
          if d ~= 34 then return false, 'json' end
          local why
          i, why = scan_string(s, i)
          if not i then return false, why end
          local _, e = string.find(s, '^[ \t\n\r]*:', i)
          if not e then return false end
          i = e + 1
        end
      elseif d == 93 then
        i, depth, done = i + 1, depth - 1, true
      end
    elseif c == 34 then
      local why
      i, why = scan_string(s, i)
      if not i then return false, why end
      done = true
    elseif c == 116 then
      if string.sub(s, i, i + 3) ~= 'true' then return false end
      i, done = i + 4, true
    elseif c == 102 then
      if string.sub(s, i, i + 4) ~= 'false' then return false end
      i, done = i + 5, true
    elseif c == 110 then
      if string.sub(s, i, i + 3) ~= 'null' then return false end
      i, done = i + 4, true
    elseif c == 45 or (c and c >= 48 and c <= 57) then
      i = scan_number(s, i)
      if not i then return false end
      done = true
    else
      return false
    end
    -- After a complete value: commas, closers, or the end.
    while done do
      i = skip_ws(s, i)
      if depth == 0 then return i > n end
      local d = string.byte(s, i)
      if d == 44 then -- ,
        i = i + 1
        if stack[depth] == 123 then
          local _, e = string.find(s, '^[ \t\n\r]*"', i)
          if not e then return false, 'json' end
          local why
          i, why = scan_string(s, e)
          if not i then return false, why end
          _, e = string.find(s, '^[ \t\n\r]*:', i)
          if not e then return false end
          i = e + 1
        end
        done = false
      elseif (d == 125 and stack[depth] == 123) or (d == 93 and stack[depth] == 91) then
        i, depth = i + 1, depth - 1
      else
        return false
      end
    end
  end
end

-- json_string encodes s as Go's json.Marshal does: short escapes for
-- \b \f \n \r \t, \u00XX for other control characters, and <, >, &,
-- U+2028, U+2029 escaped as \u003c, \u003e, \u0026, \u2028, \u2029.
local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
  ['<'] = '\\u003c', ['>'] = '\\u003e', ['&'] = '\\u0026' }
local function json_string(s)
  s = string.gsub(s, '[%z\1-\31"\\<>&]', function(ch)
    return ESC[ch] or string.format('\\u%04x', string.byte(ch))
  end)
  s = string.gsub(s, '\226\128\168', '\\u2028')
  s = string.gsub(s, '\226\128\169', '\\u2029')
  return '"' .. s .. '"'
end

-- importing tells whether this node is importing the slot of key in a
-- Cluster resharding. The declared key of the functions (the course id) is
-- not a real key, so while its slot migrates the source node always sends
-- the call here (ASK), even before the course's keys have moved: a missing
-- sequence key then means "not here yet", not "new course".
local function importing(key)
  if PUBLISH ~= 'SPUBLISH' then return false end
  local nodes = redis.pcall('CLUSTER', 'NODES')
  if type(nodes) ~= 'string' then return false end
  local slot = redis.call('CLUSTER', 'KEYSLOT', key)
  for line in string.gmatch(nodes, '[^\n]+') do
    if string.find(line, 'myself', 1, true) then
      return string.find(line, '[' .. slot .. '-<-', 1, true) ~= nil
    end
  end
  return false
end

local function not_here(course)
  return redis.error_reply('TRYAGAIN coursestream: the slot of course ' .. course ..
    ' is being moved to this node and its keys are not here yet; retry')
end

-- publish validates, numbers, stores and announces one event and returns
-- its id and envelope. Nothing is written before every check has passed.
-- A backend's call (strict) must give data as JSON; the service's own call
-- passes data Go has checked already, where none means null.
local function publish(keys, args, strict)
  if #keys ~= 1 then
    return nil, fail('want 1 key, the course id: FCALL coursestream_publish 1 <courseId> <type> <data JSON> [<operationId>]')
  end
  if #args < 1 or #args > 3 then
    return nil, fail('want <type> <data JSON> [<operationId>] after the course id')
  end
  local course, typ, data, op = keys[1], args[1], args[2] or '', args[3] or ''
  if not valid_course(course) then
    return nil, fail(string.format('invalid course id: "%s" must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$', short(course)))
  end
  if not valid_type(typ) then
    return nil, fail(string.format('invalid event type: "%s" must match ^[a-z0-9][a-z0-9._-]{0,63}$', short(typ)))
  end
  if typ == 'reset' then
    return nil, fail('invalid event type: "reset" is reserved for reset notices')
  end
  if not valid_utf8(op) then
    return nil, fail('invalid operation id: not valid UTF-8')
  end
  local oplen = utf8_len(op)
  if oplen > MAX_OPERATION_ID then
    return nil, fail(string.format('invalid operation id: %d characters, at most %d', oplen, MAX_OPERATION_ID))
  end
  if blank(data) and strict then
    if args[2] == nil then
      return nil, fail('missing data: want <type> <data JSON> [<operationId>] after the course id (null for none)')
    end
    return nil, fail('invalid data: not a JSON value (empty; send null for none)')
  elseif blank(data) then
    data = 'null'
  else
    local ok, why = valid_json(data)
    if not ok then
      if why == 'utf8' then return nil, fail('invalid data: not valid UTF-8') end
      return nil, fail('invalid data: not a JSON value')
    end
    -- Kept as written: only line breaks (whitespace outside strings in
    -- valid JSON) become spaces, so the envelope stays on one line.
    if string.find(data, '\n', 1, true) or string.find(data, '\r', 1, true) then
      data = string.gsub(data, '[\r\n]', ' ')
    end
  end

  local seqk, histk = seq_key(course), history_key(course)
  local current = redis.call('GET', seqk)
  local seq = tonumber(current or '0')
  if not seq or seq ~= math.floor(seq) or seq < 0 then
    return nil, fail(string.format('the sequence key %s does not hold a count', seqk))
  end
  seq = seq + 1
  local repair = false
  if not current and importing(seqk) then
    return nil, not_here(course)
  end
  if not current then
    -- The sequence is missing but a history may remain (the key was
    -- deleted by hand): go on after the last id it holds, ids never restart.
    local top = redis.call('XREVRANGE', histk, '+', '-', 'COUNT', 1)
    local last = top[1] and tonumber(string.match(top[1][1], '^(%d+)'))
    if last and last >= seq then seq, repair = last + 1, true end
  end
  local t = redis.call('TIME')
  local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local env = '{"id":"' .. string.format('%d', seq) .. '","courseId":"' .. course .. '","type":"' .. typ ..
    '","data":' .. data
  if op ~= '' then env = env .. ',"operationId":' .. json_string(op) end
  env = env .. ',"timestamp":' .. string.format('%d', ts) .. '}'
  if #env > MAX_EVENT_BYTES then
    return nil, fail(string.format('event too large: the envelope is %d bytes, at most %d', #env, MAX_EVENT_BYTES))
  end

  -- Every check has passed: write. The sequence key has no TTL, so ids
  -- never restart while Redis keeps its data.
  if repair then
    redis.call('SET', seqk, string.format('%d', seq))
  else
    redis.call('INCR', seqk)
  end
  redis.call('XADD', histk, 'MAXLEN', '~', HISTORY, string.format('%d', seq) .. '-0', 'envelope', env)
  redis.call('PEXPIRE', histk, HISTORY_TTL_MS)
  redis.call(PUBLISH, channel(course), env)
  return seq, env
end

redis.register_function('coursestream_publish', function(keys, args)
  local seq, err = publish(keys, args, true)
  if not seq then return err end
  return seq
end)

-- The same path, answering the envelope too (the Go service's Publish
-- returns the stored event). Backends use coursestream_publish.
redis.register_function('coursestream_publish_event', function(keys, args)
  local seq, env = publish(keys, args, false)
  if not seq then return env end
  return { seq, env }
end)

-- coursestream_history 1 <courseId> <after> <limit> answers
-- {lastId, id1, envelope1, id2, envelope2, ...}: the course's sequence and the
-- retained events after <after>, read together so that an ETag derived from
-- lastId never tags stale content.
redis.register_function {
  function_name = 'coursestream_history',
  flags = { 'no-writes' },
  callback = function(keys, args)
    if #keys ~= 1 or #args ~= 2 then
      return fail('usage: FCALL_RO coursestream_history 1 <courseId> <after> <limit>')
    end
    local course, after, limit = keys[1], args[1], args[2]
    if not valid_course(course) then
      return fail(string.format('invalid course id: "%s" must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$', short(course)))
    end
    if not string.find(after, '^[0-9]+$') or not string.find(limit, '^[0-9]+$') then
      return fail('after and limit must be decimal numbers')
    end
    local current = redis.call('GET', seq_key(course))
    if not current and importing(seq_key(course)) then
      return not_here(course)
    end
    local seq = tonumber(current or '0')
    local out = { seq }
    if #after > 15 or tonumber(after) >= seq or tonumber(limit) == 0 then
      return out
    end
    local entries = redis.call('XRANGE', history_key(course), '(' .. after .. '-0', '+', 'COUNT', limit)
    for _, e in ipairs(entries) do
      local f = e[2]
      local env = ''
      for j = 1, #f, 2 do
        if f[j] == 'envelope' then env = f[j + 1] end
      end
      out[#out + 1] = e[1]
      out[#out + 1] = env
    end
    return out
  end,
}

-- coursestream_config answers what the library was built with, so that an
-- instance sees when another one loaded different limits.
redis.register_function {
  function_name = 'coursestream_config',
  flags = { 'no-writes' },
  callback = function() return CONFIG end,
}
