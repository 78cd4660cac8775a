/* service.frontend._scan: one C pass over a serialized PublishRequest (the front-end's request-level hot path).

Contract (see docs/ingest.md, "Throughput work, third pass"):
  * scan() only ACCEPTS. It returns the bulk result only when every event passes every check and needs no change,
    i.e. exactly what Validator._all_good accepts: event_id set, a canonical lowercase UUID, unique in the request;
    a known category; event_time set, in [lo, hi] with nanos in [0, 1e9); no attributes; producer at most
    max_producer characters (valid UTF-8); payload at most max_payload bytes; a JSON category's payload valid UTF-8
    and exactly one well-formed RFC 8259 value (also accepted by msgspec; no lone surrogate escapes), nested at most
    500 deep (BigQuery's JSON limit; an empty [] or {} is a level).
  * Any doubt returns None, and the Python per-event path decides (and words every rejection): wire it does not
    understand (unknown fields, ingest_time/client_id set by the client, a field of an event twice, non-minimal
    varints, group wire types, negative seconds; the request's own sequence and omit_accepted_statuses may repeat,
    the last one wins as in any parser), more than max_events events, more than MAX_GROUPS (category, hour) groups.
  * It never crashes on any bytes and never reads outside `raw`. It scans with the GIL released for big requests
    (the bytes object is immutable, and the output objects are not visible to any other thread until returned).
  * The result: (sequence, omit_accepted_statuses, event_count, event_bytes, groups), groups in order of first
    appearance, each (category, hour, count, data, ends, times, min_time, max_time): `data` is the group's events as
    Envelope.events entries (field 3), each followed by `stamp` (see service/frontend/wire.py, frame()); `ends` the
    native int64 end offset of each event in `data`; `times` each event_time as int64 nanoseconds since the epoch;
    min/max over `times`. `category` is the str object passed in `categories`.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GROUPS 256
#define MAX_JSON_DEPTH 500 /* BigQuery's JSON nesting limit (service/jsonlimits.py) */
#define NOGIL_BYTES 65536 /* release the GIL only when the scan is long enough to be worth the hand-off */

typedef struct {
    uint32_t off, len; /* the event's bytes within the request */
    uint32_t payload_len;
    int32_t cat;
    int64_t secs;
    int32_t nanos;
    int32_t group;
    uint8_t id[16];
} event_t;

typedef struct {
    int32_t cat;
    int64_t hour;
    Py_ssize_t count, size;
    int64_t tmin, tmax;
    PyObject *data, *ends, *times;
    char *wdata;
    int64_t *wends, *wtimes;
} group_t;

typedef struct {
    const char *name;
    Py_ssize_t len;
    int json;
} category_t;

typedef struct {
    /* inputs */
    const uint8_t *raw;
    Py_ssize_t raw_len;
    const category_t *cats;
    Py_ssize_t ncats;
    int64_t lo, hi;
    Py_ssize_t max_payload, max_producer, max_events;
    Py_ssize_t stamp_len;
    /* outputs */
    uint64_t sequence;
    int omit;
    event_t *events;
    Py_ssize_t nevents, cap;
    Py_ssize_t event_bytes; /* sum of the events' serialized lengths */
    group_t groups[MAX_GROUPS];
    int ngroups;
} scan_t;

/* --- protobuf wire ---------------------------------------------------------------------------------------------- */

/* A minimally encoded varint (at most 10 bytes, no trailing zero byte). 0 on anything else. */
static int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return 0;
        uint8_t b = *p++;
        if (i == 9 && b > 1) return 0;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0) return 0; /* non-minimal */
            *out = v;
            *pp = p;
            return 1;
        }
    }
    return 0;
}

/* A length-delimited field's body: [*start, *start + *n) within end. */
static int read_len(const uint8_t **pp, const uint8_t *end, const uint8_t **start, Py_ssize_t *n) {
    uint64_t len;
    if (!read_varint(pp, end, &len) || len > (uint64_t)(end - *pp)) return 0;
    *start = *pp;
    *n = (Py_ssize_t)len;
    *pp += len;
    return 1;
}

static int varint_len(uint64_t v) {
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* --- UTF-8 and JSON --------------------------------------------------------------------------------------------- */

/* One UTF-8 sequence starting with a byte >= 0x80 (strict: no overlongs, no surrogates, <= U+10FFFF). Returns its
   length, 0 when invalid. */
static int utf8_seq(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    Py_ssize_t left = end - p;
    if (b >= 0xC2 && b <= 0xDF) {
        return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    }
    if (b >= 0xE0 && b <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (b == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (b == 0xED && p[1] > 0x9F) return 0; /* surrogate */
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (b == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (b == 0xF4 && p[1] > 0x8F) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

/* Code points in valid UTF-8, or -1. */
static Py_ssize_t utf8_chars(const uint8_t *p, Py_ssize_t n) {
    const uint8_t *end = p + n;
    Py_ssize_t chars = 0;
    while (p < end) {
        if (*p < 0x80) {
            p++;
        } else {
            int k = utf8_seq(p, end);
            if (!k) return -1;
            p += k;
        }
        chars++;
    }
    return chars;
}

/* The offset of the first byte in [p, end) that is '"', '\\', a control character or >= 0x80 (end - p if none):
   a JSON string's plain run. 16 bytes at a time with SSE2 (every x86-64), else 8 with integer tricks. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline Py_ssize_t plain_run(const uint8_t *p, const uint8_t *end) {
    const uint8_t *start = p;
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        /* signed compare: bytes >= 0x80 are negative, so they count as "less than a space" too */
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, slash)),
                                   _mm_cmplt_epi8(x, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask) return (p - start) + __builtin_ctz(mask);
        p += 16;
    }
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    return p - start;
}
#else
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline Py_ssize_t plain_run(const uint8_t *p, const uint8_t *end) {
    const uint8_t *start = p;
    while (end - p >= 8) {
        uint64_t x, q, b;
        memcpy(&x, p, 8);
        q = x ^ (ONES * '"');
        b = x ^ (ONES * '\\');
        if ((((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x) | x) & HIGHS) break;
        p += 8;
    }
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    return p - start;
}
#endif

static int hex4(const uint8_t *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string starting at *pp (on its opening quote); *pp ends after the closing quote. */
static int json_string(const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp + 1;
    for (;;) {
        p += plain_run(p, end);
        if (p >= end) return 0;
        uint8_t c = *p;
        if (c == '"') {
            *pp = p + 1;
            return 1;
        }
        if (c < 0x20) return 0;
        if (c >= 0x80) {
            int k = utf8_seq(p, end);
            if (!k) return 0;
            p += k;
        } else if (c == '\\') {
            if (end - p < 2) return 0;
            c = p[1];
            if (c == 'u') {
                unsigned u, lo;
                if (end - p < 6 || !hex4(p + 2, &u)) return 0;
                p += 6;
                if (u >= 0xDC00 && u <= 0xDFFF) return 0; /* lone low surrogate */
                if (u >= 0xD800 && u <= 0xDBFF) {         /* must be followed by a low one */
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo)) return 0;
                    if (lo < 0xDC00 || lo > 0xDFFF) return 0;
                    p += 6;
                }
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
                       c == 't') {
                p += 2;
            } else {
                return 0;
            }
        } else {
            p++;
        }
    }
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static int json_number(const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    if (*p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p)) p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return 0;
        while (p < end && is_digit(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return 0;
        while (p < end && is_digit(*p)) p++;
    }
    *pp = p;
    return 1;
}

static const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* Exactly one RFC 8259 value, whitespace around it allowed. 0 when invalid or nested deeper than MAX_JSON_DEPTH. */
static int json_valid(const uint8_t *p, Py_ssize_t n) {
    const uint8_t *end = p + n;
    uint8_t stack[MAX_JSON_DEPTH]; /* '{' or '[' */
    int depth = 0;
    p = skip_ws(p, end);
value:
    if (p >= end) return 0;
    switch (*p) {
    case '{':
        if (depth == MAX_JSON_DEPTH) return 0; /* an empty one is a level too */
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
            goto after;
        }
        stack[depth++] = '{';
        goto key;
    case '[':
        if (depth == MAX_JSON_DEPTH) return 0; /* an empty one is a level too */
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            goto after;
        }
        stack[depth++] = '[';
        goto value;
    case '"':
        if (!json_string(&p, end)) return 0;
        goto after;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4)) return 0;
        p += 4;
        goto after;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5)) return 0;
        p += 5;
        goto after;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4)) return 0;
        p += 4;
        goto after;
    default:
        if (!json_number(&p, end)) return 0;
        goto after;
    }
key:
    if (p >= end || *p != '"' || !json_string(&p, end)) return 0;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return 0;
    p = skip_ws(p + 1, end);
    goto value;
after:
    p = skip_ws(p, end);
    if (depth == 0) return p == end;
    if (p >= end) return 0;
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (stack[depth - 1] == '{') goto key;
        goto value;
    }
    if (*p == (stack[depth - 1] == '{' ? '}' : ']')) {
        p++;
        depth--;
        goto after;
    }
    return 0;
}

/* --- events ------------------------------------------------------------------------------------------------------ */

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* A canonical lowercase 8-4-4-4-12 UUID -> 16 bytes. */
static int parse_uuid(const uint8_t *s, Py_ssize_t n, uint8_t out[16]) {
    if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return 0;
    int k = 0;
    for (int i = 0; i < 36; i += 2) {
        if (i == 8 || i == 13 || i == 18 || i == 23) i++;
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0) return 0;
        out[k++] = (uint8_t)(hi << 4 | lo);
    }
    return k == 16;
}

static int parse_timestamp(const uint8_t *p, const uint8_t *end, int64_t *secs, int32_t *nanos) {
    int seen = 0;
    uint64_t v;
    *secs = 0;
    *nanos = 0;
    while (p < end) {
        uint8_t tag = *p++;
        if (tag == 0x08 && !(seen & 1)) {
            /* negative or past year 2255 (nanoseconds since the epoch must fit int64): let Python decide */
            if (!read_varint(&p, end, &v) || v > UINT64_C(9000000000)) return 0;
            *secs = (int64_t)v;
            seen |= 1;
        } else if (tag == 0x10 && !(seen & 2)) {
            if (!read_varint(&p, end, &v) || v >= 1000000000) return 0;
            *nanos = (int32_t)v;
            seen |= 2;
        } else {
            return 0;
        }
    }
    return 1;
}

static int find_category(const scan_t *s, const uint8_t *name, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < s->ncats; i++) {
        if (s->cats[i].len == n && memcmp(s->cats[i].name, name, (size_t)n) == 0) return (int)i;
    }
    return -1;
}

/* One Event's bytes: every check of the bulk path. */
static int scan_event(const scan_t *s, const uint8_t *p, const uint8_t *end, event_t *ev) {
    int seen = 0;
    const uint8_t *payload = NULL, *body;
    Py_ssize_t payload_len = 0, n;
    ev->cat = -1;
    while (p < end) {
        uint8_t tag = *p++;
        int bit;
        switch (tag) {
        case 0x0a: bit = 1; break;  /* event_id */
        case 0x12: bit = 2; break;  /* category */
        case 0x1a: bit = 4; break;  /* event_time */
        case 0x22: bit = 8; break;  /* payload */
        case 0x32: bit = 16; break; /* producer */
        default: return 0;          /* attributes, ingest_time, client_id, unknown, other wire types */
        }
        if ((seen & bit) || !read_len(&p, end, &body, &n)) return 0;
        seen |= bit;
        switch (bit) {
        case 1:
            if (!parse_uuid(body, n, ev->id)) return 0;
            break;
        case 2:
            if ((ev->cat = find_category(s, body, n)) < 0) return 0;
            break;
        case 4:
            if (!parse_timestamp(body, body + n, &ev->secs, &ev->nanos)) return 0;
            break;
        case 8:
            payload = body;
            payload_len = n;
            break;
        case 16: {
            Py_ssize_t chars = utf8_chars(body, n);
            if (chars < 0 || chars > s->max_producer) return 0;
            break;
        }
        }
    }
    if ((seen & 7) != 7) return 0; /* no id (the front-end assigns one), no category, unset event_time */
    if (ev->secs == 0 && ev->nanos == 0) return 0;
    if (ev->secs < s->lo || ev->secs > s->hi) return 0;
    if (payload_len > s->max_payload) return 0;
    if (s->cats[ev->cat].json && !json_valid(payload ? payload : (const uint8_t *)"", payload_len)) return 0;
    ev->payload_len = (uint32_t)payload_len;
    return 1;
}

static int ids_unique(const event_t *events, Py_ssize_t n) {
    int bits = 4;
    while (((Py_ssize_t)1 << bits) < 2 * n) bits++;
    size_t size = (size_t)1 << bits;
    int32_t *table = malloc(size * sizeof(int32_t));
    if (table == NULL) return 0;
    memset(table, 0xFF, size * sizeof(int32_t));
    int ok = 1;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        uint64_t a, b;
        memcpy(&a, events[i].id, 8);
        memcpy(&b, events[i].id + 8, 8);
        size_t h = (size_t)(((a ^ b) * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
        for (;;) {
            int32_t j = table[h];
            if (j < 0) {
                table[h] = (int32_t)i;
                break;
            }
            if (memcmp(events[j].id, events[i].id, 16) == 0) {
                ok = 0;
                break;
            }
            h = (h + 1) & (size - 1);
        }
    }
    free(table);
    return ok;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* The whole request, without Python objects: events, checks, duplicate ids, groups and their sizes. */
static int scan_request(scan_t *s) {
    const uint8_t *p = s->raw, *end = s->raw + s->raw_len, *body;
    uint64_t v;
    Py_ssize_t n;
    while (p < end) {
        uint8_t tag = *p++;
        if (tag == 0x0a) {
            if (!read_len(&p, end, &body, &n)) return 0;
            if (s->nevents == s->max_events) return 0;
            if (s->nevents == s->cap) {
                Py_ssize_t cap = s->cap ? 2 * s->cap : 1024;
                event_t *grown = realloc(s->events, (size_t)cap * sizeof(event_t));
                if (grown == NULL) return 0;
                s->events = grown;
                s->cap = cap;
            }
            event_t *ev = &s->events[s->nevents++];
            ev->off = (uint32_t)(body - s->raw);
            ev->len = (uint32_t)n;
            if (!scan_event(s, body, body + n, ev)) return 0;
        } else if (tag == 0x10) { /* a scalar repeated on the wire: the last value wins, as in any parser (the
                                     load generator appends a sequence to pre-serialized requests) */
            if (!read_varint(&p, end, &s->sequence)) return 0;
        } else if (tag == 0x18) {
            if (!read_varint(&p, end, &v) || v > 1) return 0;
            s->omit = (int)v;
        } else {
            return 0;
        }
    }
    if (s->nevents == 0 || !ids_unique(s->events, s->nevents)) return 0;
    for (Py_ssize_t i = 0; i < s->nevents; i++) {
        event_t *ev = &s->events[i];
        int64_t hour = floor_div(ev->secs, 3600), t = ev->secs * 1000000000 + ev->nanos;
        int g = s->ngroups - 1;
        if (g < 0 || s->groups[g].cat != ev->cat || s->groups[g].hour != hour) {
            for (g = 0; g < s->ngroups; g++) {
                if (s->groups[g].cat == ev->cat && s->groups[g].hour == hour) break;
            }
            if (g == s->ngroups) {
                if (g == MAX_GROUPS) return 0;
                group_t *ng = &s->groups[s->ngroups++];
                memset(ng, 0, sizeof(*ng));
                ng->cat = ev->cat;
                ng->hour = hour;
                ng->tmin = ng->tmax = t;
            }
        }
        group_t *gr = &s->groups[g];
        uint64_t framed = (uint64_t)ev->len + (uint64_t)s->stamp_len;
        gr->count++;
        gr->size += 1 + varint_len(framed) + (Py_ssize_t)framed;
        if (t < gr->tmin) gr->tmin = t;
        if (t > gr->tmax) gr->tmax = t;
        ev->group = g;
        s->event_bytes += ev->len; /* the serialized event, as the Python path counts it */
    }
    return 1;
}

/* Writes every group's framed events, ends and times into the (not yet shared) output buffers. */
static void fill_groups(scan_t *s, const uint8_t *stamp) {
    for (int g = 0; g < s->ngroups; g++) s->groups[g].count = 0;
    uint8_t *cursor[MAX_GROUPS];
    for (int g = 0; g < s->ngroups; g++) cursor[g] = (uint8_t *)s->groups[g].wdata;
    for (Py_ssize_t i = 0; i < s->nevents; i++) {
        const event_t *ev = &s->events[i];
        group_t *gr = &s->groups[ev->group];
        uint8_t *w = cursor[ev->group];
        *w++ = 0x1a;
        w = put_varint(w, (uint64_t)ev->len + (uint64_t)s->stamp_len);
        memcpy(w, s->raw + ev->off, ev->len);
        w += ev->len;
        memcpy(w, stamp, (size_t)s->stamp_len);
        w += s->stamp_len;
        cursor[ev->group] = w;
        gr->wends[gr->count] = (int64_t)(w - (uint8_t *)gr->wdata);
        gr->wtimes[gr->count] = ev->secs * 1000000000 + ev->nanos;
        gr->count++;
    }
}

static void release_groups(scan_t *s) {
    for (int g = 0; g < s->ngroups; g++) {
        Py_CLEAR(s->groups[g].data);
        Py_CLEAR(s->groups[g].ends);
        Py_CLEAR(s->groups[g].times);
    }
}

static PyObject *build_result(scan_t *s, PyObject *categories) {
    PyObject *groups = PyList_New(s->ngroups);
    if (groups == NULL) return NULL;
    for (int g = 0; g < s->ngroups; g++) {
        group_t *gr = &s->groups[g];
        PyObject *name = PyTuple_GET_ITEM(PyTuple_GET_ITEM(categories, gr->cat), 0);
        PyObject *item = Py_BuildValue("(OLnOOOLL)", name, (long long)gr->hour, gr->count, gr->data, gr->ends,
                                       gr->times, (long long)gr->tmin, (long long)gr->tmax);
        if (item == NULL) {
            Py_DECREF(groups);
            return NULL;
        }
        PyList_SET_ITEM(groups, g, item);
    }
    return Py_BuildValue("(KOnnN)", (unsigned long long)s->sequence, s->omit ? Py_True : Py_False, s->nevents,
                         s->event_bytes, groups);
}

static PyObject *scan(PyObject *module, PyObject *args) {
    PyObject *raw, *categories, *stamp;
    long long lo, hi;
    Py_ssize_t max_payload, max_producer, max_events;
    if (!PyArg_ParseTuple(args, "SO!SLLnnn:scan", &raw, &PyTuple_Type, &categories, &stamp, &lo, &hi, &max_payload,
                          &max_producer, &max_events))
        return NULL;
    Py_ssize_t ncats = PyTuple_GET_SIZE(categories);
    scan_t *s = calloc(1, sizeof(scan_t));
    category_t *cats = calloc((size_t)(ncats ? ncats : 1), sizeof(category_t));
    PyObject *result = NULL;
    const uint8_t *stamp_bytes = (const uint8_t *)PyBytes_AS_STRING(stamp);
    PyThreadState *ts = NULL;
    int big = 0, ok;
    if (s == NULL || cats == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < ncats; i++) {
        PyObject *item = PyTuple_GET_ITEM(categories, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "categories must be a tuple of (name, is_json) pairs");
            goto done;
        }
        cats[i].name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 0), &cats[i].len);
        if (cats[i].name == NULL) goto done;
        if ((cats[i].json = PyObject_IsTrue(PyTuple_GET_ITEM(item, 1))) < 0) goto done;
    }
    s->raw = (const uint8_t *)PyBytes_AS_STRING(raw);
    s->raw_len = PyBytes_GET_SIZE(raw);
    s->cats = cats;
    s->ncats = ncats;
    s->lo = lo;
    s->hi = hi;
    s->max_payload = max_payload;
    s->max_producer = max_producer;
    s->max_events = max_events;
    s->stamp_len = PyBytes_GET_SIZE(stamp);
    if (s->raw_len >= INT32_MAX) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    big = s->raw_len >= NOGIL_BYTES;
    ts = big ? PyEval_SaveThread() : NULL;
    ok = scan_request(s);
    if (big) PyEval_RestoreThread(ts);
    if (!ok) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (int g = 0; g < s->ngroups; g++) {
        group_t *gr = &s->groups[g];
        gr->data = PyBytes_FromStringAndSize(NULL, gr->size);
        gr->ends = PyBytes_FromStringAndSize(NULL, gr->count * (Py_ssize_t)sizeof(int64_t));
        gr->times = PyBytes_FromStringAndSize(NULL, gr->count * (Py_ssize_t)sizeof(int64_t));
        if (gr->data == NULL || gr->ends == NULL || gr->times == NULL) goto done;
        gr->wdata = PyBytes_AS_STRING(gr->data);
        gr->wends = (int64_t *)PyBytes_AS_STRING(gr->ends);
        gr->wtimes = (int64_t *)PyBytes_AS_STRING(gr->times);
    }
    ts = big ? PyEval_SaveThread() : NULL;
    fill_groups(s, stamp_bytes);
    if (big) PyEval_RestoreThread(ts);
    result = build_result(s, categories);
done:
    if (s != NULL) {
        release_groups(s);
        free(s->events);
    }
    free(s);
    free(cats);
    return result;
}

static PyObject *json_ok(PyObject *module, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "json_ok() takes bytes");
        return NULL;
    }
    return PyBool_FromLong(json_valid((const uint8_t *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(raw, categories, stamp, lo, hi, max_payload, max_producer, max_events) -> tuple | None\n\n"
     "The bulk verdict on one serialized PublishRequest: the grouped, framed events when every event is accepted\n"
     "unchanged, None when the Python path must decide (see the module docstring)."},
    {"json_ok", json_ok, METH_O,
     "json_ok(payload) -> bool\n\nTrue when payload is UTF-8 and exactly one RFC 8259 value that msgspec accepts too\n"
     "(False also means 'not sure'). For tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "service.frontend._scan",
    "One C pass over a serialized PublishRequest: accepts a whole request or says None (see _scan.c's contract).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
