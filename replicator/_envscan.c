/* replicator._envscan: a wire scan of a serialized logpipe.v1.Envelope (proto/logpipe/v1/event.proto).
 *
 * scan(body, json_payloads=True) -> (envelope_id, category, event_count) | None
 *
 * Contract: the scan only ACCEPTS. It returns the tuple only when it is certain that
 *   (1) upb's Envelope.ParseFromString(body) succeeds (every field it meets is a known field with its declared wire
 *       type, every varint and length is well formed and in bounds, every proto3 string is strict UTF-8), and
 *   (2) the reference checks of service.envelope.decode on the parsed message pass: envelope_id is 1-128 characters
 *       of [A-Za-z0-9._-], every event's category equals the envelope's category, every event's event_id is not
 *       empty, every event's event_time and ingest_time have seconds in [MIN_TIME_SECONDS, END_TIME_SECONDS) and
 *       nanos in [0, 1e9), and, when json_payloads is true, every event's payload is strict UTF-8 (proto3
 *       semantics: the last occurrence of a singular scalar field wins; occurrences of a message field merge).
 *       The caller passes json_payloads true unless it knows the envelope's category is not a json one.
 * It returns None for anything else, including valid inputs it does not handle (unknown fields, groups, a known
 * field with another wire type, non-minimal tags): the caller then hands the message to the reference decoder,
 * which decides and gives the poison reason. It never reads outside the buffer and never crashes, whatever the
 * bytes. The attribute checks (envelope_id/category attributes) stay with the caller.
 *
 * The scan holds no Python objects while it runs and releases the GIL. Plain CPython C API, C11.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n;
} span;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

/* A varint of at most max_bytes bytes (upb fails past 10; tags and lengths are 32-bit and fail past 5). */
static int read_varint(cursor *c, int max_bytes, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (c->p >= c->end) return -1;
        uint8_t b = *c->p++;
        if (i == 9 && b > 1) return -1; /* bits past 64: stricter than upb, which is allowed */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* A tag: field number and wire type. Tags past 32 bits or field number 0 are refused. */
static int read_tag(cursor *c, uint32_t *field, uint32_t *wire) {
    uint64_t t;
    if (read_varint(c, 5, &t) < 0 || t > UINT32_MAX) return -1;
    *field = (uint32_t)(t >> 3);
    *wire = (uint32_t)(t & 7);
    return *field == 0 ? -1 : 0;
}

/* The payload of a length-delimited field (wire type 2), which must lie inside the current message. */
static int read_len(cursor *c, span *out) {
    uint64_t n;
    if (read_varint(c, 5, &n) < 0) return -1;
    if (n > (uint64_t)(c->end - c->p)) return -1;
    out->p = c->p;
    out->n = (size_t)n;
    c->p += n;
    return 0;
}

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), as upb checks proto3 strings. */
static int utf8_ok(span s) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    while (p < end) {
        /* ASCII fast path: 32, then 8 bytes at a time while no byte has its high bit set (memcpy: any alignment). */
        const uint64_t high = UINT64_C(0x8080808080808080);
        while ((size_t)(end - p) >= 32) {
            uint64_t w[4];
            memcpy(w, p, 32);
            if ((w[0] | w[1] | w[2] | w[3]) & high) break;
            p += 32;
        }
        while ((size_t)(end - p) >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & high) break;
            p += 8;
        }
        if (p >= end) break;
        uint8_t b = *p;
        if (b < 0x80) {
            p++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* bounds of the second byte */
        if (b >= 0xc2 && b <= 0xdf) {
            need = 1;
        } else if (b >= 0xe0 && b <= 0xef) {
            need = 2;
            if (b == 0xe0) lo = 0xa0;
            if (b == 0xed) hi = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3;
            if (b == 0xf0) lo = 0x90;
            if (b == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if ((size_t)(end - p) <= need) return 0;
        if (p[1] < lo || p[1] > hi) return 0;
        for (size_t k = 2; k <= need; k++) {
            if ((p[k] & 0xc0) != 0x80) return 0;
        }
        p += need + 1;
    }
    return 1;
}

static int read_string(cursor *c, uint32_t wire, span *out) {
    if (wire != 2 || read_len(c, out) < 0) return -1;
    return utf8_ok(*out) ? 0 : -1;
}

/* The accepted event_time/ingest_time seconds: [1000-01-01T00:00:00Z, 9999-01-01T00:00:00Z), as
 * service.envelope.MIN_TIME_SECONDS / END_TIME_SECONDS (tests compare the verdicts at the edges). */
#define MIN_TIME_SECONDS INT64_C(-30610224000)
#define END_TIME_SECONDS INT64_C(253370764800)

typedef struct {
    int64_t seconds;
    int32_t nanos;
} timestamp;

/* google.protobuf.Timestamp: seconds = 1 (int64), nanos = 2 (int32), both varints. Updates *ts with the fields
 * present (a repeated occurrence of the message field merges into it; last value of each scalar wins). int64 and
 * int32 are read as upb does: the varint's low 64 (32) bits, two's complement. */
static int scan_timestamp(span s, timestamp *ts) {
    cursor c = {s.p, s.p + s.n};
    while (c.p < c.end) {
        uint32_t field, wire;
        uint64_t v;
        if (read_tag(&c, &field, &wire) < 0) return -1;
        if ((field != 1 && field != 2) || wire != 0) return -1;
        if (read_varint(&c, 10, &v) < 0) return -1;
        if (field == 1) {
            ts->seconds = (int64_t)v;
        } else {
            ts->nanos = (int32_t)(uint32_t)v;
        }
    }
    return 0;
}

static int timestamp_ok(timestamp ts) {
    return ts.seconds >= MIN_TIME_SECONDS && ts.seconds < END_TIME_SECONDS && ts.nanos >= 0 && ts.nanos < 1000000000;
}

/* service.envelope.ENVELOPE_ID_RE: 1-128 characters of [A-Za-z0-9._-] (it becomes part of an object name). */
static int envelope_id_ok(span s) {
    if (s.n < 1 || s.n > 128) return 0;
    for (size_t i = 0; i < s.n; i++) {
        uint8_t b = s.p[i];
        int ok = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '.' || b == '_' ||
                 b == '-';
        if (!ok) return 0;
    }
    return 1;
}

/* An entry of map<string, string> attributes: key = 1, value = 2. */
static int scan_map_entry(span s) {
    cursor c = {s.p, s.p + s.n};
    while (c.p < c.end) {
        uint32_t field, wire;
        span str;
        if (read_tag(&c, &field, &wire) < 0) return -1;
        if (field != 1 && field != 2) return -1;
        if (read_string(&c, wire, &str) < 0) return -1;
    }
    return 0;
}

/* One Event; its final event_id and category (last occurrence wins; absent = empty). Fails when its final
 * event_time or ingest_time (absent = the epoch) is out of range, or, with json_payloads, its final payload is not
 * UTF-8. */
static int scan_event(span s, int json_payloads, span *event_id, span *category) {
    cursor c = {s.p, s.p + s.n};
    span none = {s.p, 0};
    span payload = none;
    timestamp event_time = {0, 0}, ingest_time = {0, 0};
    *event_id = none;
    *category = none;
    while (c.p < c.end) {
        uint32_t field, wire;
        span sub;
        if (read_tag(&c, &field, &wire) < 0) return -1;
        switch (field) {
            case 1: /* event_id */
                if (read_string(&c, wire, event_id) < 0) return -1;
                break;
            case 2: /* category */
                if (read_string(&c, wire, category) < 0) return -1;
                break;
            case 6: /* producer */
            case 8: /* client_id */
                if (read_string(&c, wire, &sub) < 0) return -1;
                break;
            case 3: /* event_time */
                if (wire != 2 || read_len(&c, &sub) < 0 || scan_timestamp(sub, &event_time) < 0) return -1;
                break;
            case 7: /* ingest_time */
                if (wire != 2 || read_len(&c, &sub) < 0 || scan_timestamp(sub, &ingest_time) < 0) return -1;
                break;
            case 4: /* payload: bytes; only the last occurrence counts, checked below */
                if (wire != 2 || read_len(&c, &payload) < 0) return -1;
                break;
            case 5: /* attributes entry */
                if (wire != 2 || read_len(&c, &sub) < 0 || scan_map_entry(sub) < 0) return -1;
                break;
            default:
                return -1;
        }
    }
    if (!timestamp_ok(event_time) || !timestamp_ok(ingest_time)) return -1;
    if (json_payloads && !utf8_ok(payload)) return -1;
    return 0;
}

static int span_eq(span a, span b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

/* The whole Envelope. 0 and its facts when every check passes; -1 otherwise. */
static int scan_envelope(span s, int json_payloads, span *envelope_id, span *category, Py_ssize_t *events) {
    cursor c = {s.p, s.p + s.n};
    span none = {s.p, 0};
    span first_category = none; /* every event's category must equal this one, and it the envelope's */
    Py_ssize_t count = 0;
    *envelope_id = none;
    *category = none;
    while (c.p < c.end) {
        uint32_t field, wire;
        span sub, ev_id, ev_cat;
        if (read_tag(&c, &field, &wire) < 0) return -1;
        switch (field) {
            case 1: /* envelope_id */
                if (read_string(&c, wire, envelope_id) < 0) return -1;
                break;
            case 2: /* category */
                if (read_string(&c, wire, category) < 0) return -1;
                break;
            case 3: /* events */
                if (wire != 2 || read_len(&c, &sub) < 0 || scan_event(sub, json_payloads, &ev_id, &ev_cat) < 0)
                    return -1;
                if (ev_id.n == 0) return -1;
                if (count == 0) {
                    first_category = ev_cat;
                } else if (!span_eq(ev_cat, first_category)) {
                    return -1;
                }
                count++;
                break;
            case 4: /* frontend */
                if (read_string(&c, wire, &sub) < 0) return -1;
                break;
            case 5: { /* created: not range-checked (the reference does not check it) */
                timestamp created = {0, 0};
                if (wire != 2 || read_len(&c, &sub) < 0 || scan_timestamp(sub, &created) < 0) return -1;
                break;
            }
            default:
                return -1;
        }
    }
    if (!envelope_id_ok(*envelope_id)) return -1;
    if (count > 0 && !span_eq(first_category, *category)) return -1;
    *events = count;
    return 0;
}

static PyObject *envscan_scan(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *arg;
    int json_payloads = 1;
    if (!PyArg_ParseTuple(args, "O|p:scan", &arg, &json_payloads)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    span body = {(const uint8_t *)view.buf, (size_t)view.len};
    span envelope_id, category;
    Py_ssize_t events = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = scan_envelope(body, json_payloads, &envelope_id, &category, &events);
    Py_END_ALLOW_THREADS;
    PyObject *result = NULL;
    if (rc < 0) {
        result = Py_NewRef(Py_None);
    } else {
        /* Both spans point into the buffer, which the view keeps alive and unchanged until released. */
        PyObject *id = PyUnicode_DecodeUTF8((const char *)envelope_id.p, (Py_ssize_t)envelope_id.n, "strict");
        PyObject *cat = id ? PyUnicode_DecodeUTF8((const char *)category.p, (Py_ssize_t)category.n, "strict") : NULL;
        if (id && cat) result = Py_BuildValue("(OOn)", id, cat, events);
        Py_XDECREF(id);
        Py_XDECREF(cat);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef envscan_methods[] = {
    {"scan", envscan_scan, METH_VARARGS,
     "scan(body, json_payloads=True, /) -> (envelope_id, category, event_count) | None\n\n"
     "Accepts a serialized logpipe.v1.Envelope only when upb parses it and the reference checks pass (envelope_id\n"
     "1-128 of [A-Za-z0-9._-], every event of the envelope's category with an event_id, event and ingest times in\n"
     "range, UTF-8 payloads when json_payloads); None means: ask the reference decoder."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef envscan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "replicator._envscan",
    .m_doc = "Wire scan of a serialized logpipe.v1.Envelope that only accepts (see replicator/decode.py).",
    .m_size = 0,
    .m_methods = envscan_methods,
};

PyMODINIT_FUNC PyInit__envscan(void) { return PyModule_Create(&envscan_module); }
