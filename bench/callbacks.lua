-- wrk script for the payrelay ingest benchmark (bench/ingest.sh).
--
--   wrk ... -s bench/callbacks.lua URL -- PATHS_FILE NTHREADS [GO_FILE]
--
-- PATHS_FILE holds one pre-signed callback path per line (bench/gen_requests.py).
-- wrk thread t (0-based) takes the lines whose 0-based index i has
-- i % NTHREADS == t, so the threads' slices are disjoint. Within a thread the
-- connections share one cursor: every path of the slice is sent exactly once,
-- in order, before any is sent again. When a slice is exhausted the thread
-- starts over at its beginning (a "wrap"): those requests are duplicates, which
-- payrelayd acks again but records nothing new for. done() reports wraps.
--
-- Every response is checked: status 200 and body exactly "success"; done()
-- prints the count of the others (must be 0) and one sample of them.
--
-- done() prints one machine-readable line for ingest.sh:
--   BENCH non_success=.. issued=.. answered=.. distinct_issued=..
--         distinct_answered=.. paths=.. wraps=..
-- issued counts request() calls (a request written at the end of the run may
-- never be answered, but the server may still have recorded it);
-- distinct_issued = sum over threads of min(issued, slice size), likewise
-- distinct_answered. It also prints one line per thread:
--   BENCH_THREAD tid=.. slice=.. issued=.. answered=..
-- from which bench/check_stream.py rebuilds the exact set of callbacks sent.

local ffi = require("ffi")
ffi.cdef([[
int usleep(unsigned int usec);
unsigned long pthread_self(void);
]])

local threads = {}
local nsetup = 0

function setup(thread)
    thread:set("tid", nsetup)
    nsetup = nsetup + 1
    table.insert(threads, thread)
end

-- Per-thread state (globals of the thread's Lua state, read by done()).
reqs = nil
slice = 0
pos = 0
issued = 0
answered = 0
bad = 0
wraps = 0
bad_sample = ""
go = false
go_file = nil
init_os_thread = nil

function init(args)
    local file = args[1]
    local nthreads = tonumber(args[2])
    if not file or not nthreads or nthreads < 1 then
        io.stderr:write("callbacks.lua: usage: -- PATHS_FILE NTHREADS [GO_FILE]\n")
        os.exit(2)
    end
    go_file = args[3] or (file .. ".go")
    -- init() runs on wrk's main OS thread; so does the one request() call
    -- wrk makes to check the script, the real ones run on the thread's own.
    init_os_thread = tonumber(ffi.C.pthread_self())
    if (tid or 0) == 0 then
        os.remove(go_file)
    end
    local f, err = io.open(file, "r")
    if not f then
        io.stderr:write("callbacks.lua: " .. tostring(err) .. "\n")
        os.exit(2)
    end
    local t = tid or 0
    local i = 0
    reqs = {}
    for line in f:lines() do
        if line ~= "" then
            if i % nthreads == t then
                -- Pre-format the whole request: request() then costs nothing.
                reqs[#reqs + 1] = wrk.format("GET", line)
            end
            i = i + 1
        end
    end
    f:close()
    slice = #reqs
    if slice == 0 then
        io.stderr:write("callbacks.lua: thread " .. t .. " has no paths\n")
        os.exit(2)
    end
    if t == nthreads - 1 then
        -- The last init: every thread has its slice, the run may start.
        local g = assert(io.open(go_file, "w"))
        g:close()
    end
end

-- wrk runs init() for one thread after the other and starts each thread as
-- soon as its init() returns: without this gate, thread 0 would send requests
-- while the later threads are still loading their slices, outside of the
-- measured duration (wrk starts its clock after the last thread starts).
-- The first request() of each thread waits (blocking its own event loop, which
-- has nothing else to do yet) until the last init() has created the go file.
local function wait_for_go()
    for _ = 1, 120000 do
        local g = io.open(go_file, "r")
        if g then
            g:close()
            return
        end
        ffi.C.usleep(1000)
    end
    io.stderr:write("callbacks.lua: go file never appeared; starting anyway\n")
end

function request()
    if not reqs then
        -- Not a thread's state (older wrk check the script in the main one).
        return wrk.format("GET", "/")
    end
    if not go then
        if tonumber(ffi.C.pthread_self()) == init_os_thread then
            -- wrk's check of the script (it counts the requests in what
            -- request() returns): nothing is sent, so nothing is counted.
            return reqs[1]
        end
        wait_for_go()
        go = true
    end
    pos = pos + 1
    if pos > slice then
        pos = 1
        wraps = wraps + 1
    end
    issued = issued + 1
    return reqs[pos]
end

function response(status, headers, body)
    answered = answered + 1
    if status ~= 200 or body ~= "success" then
        bad = bad + 1
        if bad_sample == "" then
            local b = tostring(body):sub(1, 80):gsub("%c", ".")
            bad_sample = "status=" .. tostring(status) .. " body=" .. b
        end
    end
end

function done(summary, latency, requests)
    local t_issued, t_answered, t_bad, d_issued, d_answered, paths, t_wraps = 0, 0, 0, 0, 0, 0, 0
    local sample = ""
    for i, thread in ipairs(threads) do
        local n = thread:get("slice") or 0
        local is = thread:get("issued") or 0
        local an = thread:get("answered") or 0
        -- Thread i-1 sent positions 1..min(issued, slice) of its slice.
        io.write(string.format("BENCH_THREAD tid=%d slice=%d issued=%d answered=%d\n", i - 1, n, is, an))
        t_issued = t_issued + is
        t_answered = t_answered + an
        t_bad = t_bad + (thread:get("bad") or 0)
        t_wraps = t_wraps + (thread:get("wraps") or 0)
        d_issued = d_issued + math.min(is, n)
        d_answered = d_answered + math.min(an, n)
        paths = paths + n
        local s = thread:get("bad_sample") or ""
        if sample == "" then sample = s end
    end
    io.write(string.format(
        "BENCH non_success=%d issued=%d answered=%d distinct_issued=%d distinct_answered=%d paths=%d wraps=%d\n",
        t_bad, t_issued, t_answered, d_issued, d_answered, paths, t_wraps))
    if sample ~= "" then
        io.write("BENCH first_non_success " .. sample .. "\n")
    end
end
