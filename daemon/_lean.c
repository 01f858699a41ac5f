/* The compiled per-frame kernel of the lean path (daemon/fastpath.py, daemon/kernel.py).

   A 10-100 Hz probe leaves the loop asleep between frames, so each frame runs on cold
   caches and every numpy call it makes costs tens of microseconds on a small machine;
   here one call does what took a dozen: COBS decode of one NIRSB DATA frame, its checks
   (length, DATA header shape, CRC-16/CCITT-FALSE, frame type, counter continuity), the
   light range check, and the modified Beer-Lambert conversion (dOD = ln I0 - ln I, then
   [dHbO, dHbR, dHbT] = P . dOD per channel).  A second call stores the sample in the ring.

   The arithmetic is written once (mbll below) and used by the general path too
   (Converter, through kernel.convert), so both paths give the same bits.  It is built
   with -ffp-contract=off: no fused multiply-add, the same rounding on every machine.
   Anything unusual returns None and the caller takes the general path with nothing
   changed. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* CRC-16/CCITT-FALSE (poly 0x1021, not reflected, init 0xFFFF), eight bytes at a time:
   crc_table[k][b] is what byte b followed by k zero bytes adds to the register, so eight
   bytes (the register's two folded into the first two) take eight lookups and no
   dependency chain between them; a 4096 x 2 frame's 32 KB took about 60 us a byte at a
   time.  crc_table[0] is the classic byte-at-a-time table, used for the tail. */
static uint16_t crc_table[8][256];

static void crc_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint16_t c = (uint16_t)(i << 8);
        for (int b = 0; b < 8; b++)
            c = (c & 0x8000) ? (uint16_t)((c << 1) ^ 0x1021) : (uint16_t)(c << 1);
        crc_table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (unsigned i = 0; i < 256; i++) {
            uint16_t c = crc_table[k - 1][i];
            crc_table[k][i] = (uint16_t)((c << 8) ^ crc_table[0][c >> 8]);
        }
}

static uint16_t crc_ccitt(const unsigned char *p, Py_ssize_t n)
{
    uint16_t crc = 0xFFFF;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        crc = (uint16_t)(crc_table[7][p[i] ^ (crc >> 8)] ^ crc_table[6][p[i + 1] ^ (crc & 0xFF)] ^
                         crc_table[5][p[i + 2]] ^ crc_table[4][p[i + 3]] ^
                         crc_table[3][p[i + 4]] ^ crc_table[2][p[i + 5]] ^
                         crc_table[1][p[i + 6]] ^ crc_table[0][p[i + 7]]);
    for (; i < n; i++)
        crc = (uint16_t)((crc << 8) ^ crc_table[0][((crc >> 8) ^ p[i]) & 0xFF]);
    return crc;
}

/* COBS-decode src[0:n] (no delimiter inside) into dst, which holds cap bytes.  Returns
   the decoded length, or -1 for bad COBS or more than cap bytes (as cobs.decode raises
   for the first; the second is not this kernel's frame). */
static Py_ssize_t cobs_decode(const unsigned char *src, Py_ssize_t n, unsigned char *dst,
                              Py_ssize_t cap)
{
    Py_ssize_t i = 0, o = 0;
    while (i < n) {
        unsigned code = src[i++];
        if (code == 0)
            return -1;
        Py_ssize_t run = (Py_ssize_t)code - 1;
        if (i + run > n || o + run > cap)
            return -1;
        memcpy(dst + o, src + i, (size_t)run);
        o += run;
        i += run;
        if (i < n && code < 0xFF) {
            if (o >= cap)
                return -1;
            dst[o++] = 0;
        }
    }
    return o;
}

/* od[n][c][w] = li[c][w] - ln I[n][c][w]; hb[n][j][c] = sum_w P[c][j][w] od[n][c][w] */
static void mbll(const double *li, const double *P, const double *I, double *od, double *hb,
                 Py_ssize_t n, Py_ssize_t n_ch, Py_ssize_t n_wl)
{
    for (Py_ssize_t s = 0; s < n; s++) {
        const double *Is = I + s * n_ch * n_wl;
        double *ods = od + s * n_ch * n_wl, *hbs = hb + s * 3 * n_ch;
        for (Py_ssize_t k = 0; k < n_ch * n_wl; k++)
            ods[k] = li[k] - log(Is[k]);
        for (Py_ssize_t c = 0; c < n_ch; c++) {
            const double *x = ods + c * n_wl;
            for (int j = 0; j < 3; j++) {
                const double *row = P + (c * 3 + j) * n_wl;
                double acc = 0.0;
                for (Py_ssize_t w = 0; w < n_wl; w++)
                    acc += row[w] * x[w];
                hbs[j * n_ch + c] = acc;
            }
        }
    }
}

/* A C-contiguous buffer of `count` items of `itemsize` bytes whose format ends in `code`. */
static int take(PyObject *obj, Py_buffer *view, Py_ssize_t count, Py_ssize_t itemsize,
                char code, int writable, const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_ValueError, "%s: %S", what, value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    size_t fl = strlen(f);
    if (view->itemsize != itemsize || view->len != count * itemsize || fl == 0 ||
        f[fl - 1] != code || (fl == 2 && f[0] != '<' && f[0] != '=' && f[0] != '@') || fl > 2) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of '%c'", what, count, code);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- convert(...) */

static PyObject *convert(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* convert(log_i0, P, I, od, hb, n, n_ch, n_wl): the general path's clean block */
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "convert takes 8 arguments");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[5]), n_ch = PyLong_AsSsize_t(args[6]),
               n_wl = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred())
        return NULL;
    if (n < 0 || n_ch <= 0 || n_wl <= 0) {
        PyErr_SetString(PyExc_ValueError, "convert: bad shape");
        return NULL;
    }
    Py_buffer v[5];
    const Py_ssize_t counts[5] = {n_ch * n_wl, n_ch * 3 * n_wl, n * n_ch * n_wl,
                                  n * n_ch * n_wl, n * 3 * n_ch};
    static const char *what[5] = {"log_i0", "P", "I", "od", "hb"};
    int got = 0;
    for (; got < 5; got++)
        if (take(args[got], &v[got], counts[got], 8, 'd', got >= 3, what[got]) < 0)
            break;
    if (got == 5)
        mbll(v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, n, n_ch, n_wl);
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&v[i]);
    if (got < 5)
        return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- Kernel */

enum { R_T, R_TDEV, R_RAW, R_HB, R_QUALITY, R_FLAGS, R_EPOCH, N_RING };

typedef struct {
    PyObject_HEAD
    Py_ssize_t length, n_ch, n_wl, capacity;
    unsigned char head[3];
    double lo, hi;
    int check_hi;
    Py_buffer log_i0, P, od;   /* held for the kernel's life: in-place updates are seen */
    Py_buffer ring[N_RING];
    int held;                  /* how many of the buffers above are held */
    double *counts;            /* the last frame's counts as float64 */
    unsigned char *scratch;    /* pending + data when a frame came in several reads */
    Py_ssize_t scratch_cap;
    /* the hb message's sender (kernel.hb_sender): libzmq's zmq_send, the socket, the
       header's fixed parts between its per-frame fields, a buffer for the header */
    int (*zsend)(void *, const void *, size_t, int);
    void *zsock;
    PyObject *segs;            /* tuple of N_SEGS bytes */
    unsigned char *hdr;
    Py_ssize_t hdr_cap;
} Kernel;

enum { N_SEGS = 7, ZMQ_SNDMORE_ = 2 };

static void kernel_release(Kernel *k)
{
    Py_buffer *all[3 + N_RING] = {&k->log_i0, &k->P, &k->od};
    for (int i = 0; i < N_RING; i++)
        all[3 + i] = &k->ring[i];
    for (int i = 0; i < k->held; i++)
        PyBuffer_Release(all[i]);
    k->held = 0;
    PyMem_Free(k->counts);
    PyMem_Free(k->scratch);
    PyMem_Free(k->hdr);
    k->counts = NULL;
    k->scratch = NULL;
    k->hdr = NULL;
    k->hdr_cap = 0;
    k->zsend = NULL;
    k->zsock = NULL;
    Py_CLEAR(k->segs);
}

static void kernel_dealloc(Kernel *k)
{
    kernel_release(k);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

static int kernel_init(Kernel *k, PyObject *args, PyObject *kw)
{
    /* Kernel(length, head, lo, hi, check_hi, log_i0, P, od, capacity, n_ch, n_wl,
              t, t_dev, raw, hb, quality, flags, epoch) */
    Py_ssize_t length, capacity, n_ch, n_wl;
    Py_buffer headb;
    double lo, hi;
    int check_hi;
    PyObject *o[3 + N_RING];
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Kernel takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "ny*ddpOOOnnnOOOOOOO", &length, &headb, &lo, &hi, &check_hi,
                          &o[0], &o[1], &o[2], &capacity, &n_ch, &n_wl, &o[3], &o[4], &o[5],
                          &o[6], &o[7], &o[8], &o[9]))
        return -1;
    kernel_release(k);
    int bad = headb.len != 3 || n_ch <= 0 || n_wl <= 0 || capacity <= 0 ||
              length != 14 + 4 * n_ch * n_wl;
    if (!bad)
        memcpy(k->head, headb.buf, 3);
    PyBuffer_Release(&headb);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "Kernel: inconsistent frame shape");
        return -1;
    }
    k->length = length;
    k->n_ch = n_ch;
    k->n_wl = n_wl;
    k->capacity = capacity;
    k->lo = lo;
    k->hi = hi;
    k->check_hi = check_hi;
    const Py_ssize_t m = n_ch * n_wl;
    struct { Py_buffer *view; Py_ssize_t count, size; char code; int w; const char *what; } spec[] = {
        {&k->log_i0, m, 8, 'd', 0, "log_i0"},
        {&k->P, n_ch * 3 * n_wl, 8, 'd', 0, "P"},
        {&k->od, m, 8, 'd', 1, "od"},
        {&k->ring[R_T], capacity, 8, 'd', 1, "ring t"},
        {&k->ring[R_TDEV], capacity, 8, 'd', 1, "ring t_dev"},
        {&k->ring[R_RAW], capacity * m, 8, 'd', 1, "ring raw"},
        {&k->ring[R_HB], capacity * 3 * n_ch, 8, 'd', 1, "ring hb"},
        {&k->ring[R_QUALITY], capacity * n_ch, 1, 'B', 1, "ring quality"},
        {&k->ring[R_FLAGS], capacity, 1, 'B', 1, "ring flags"},
        {&k->ring[R_EPOCH], capacity, 2, 'h', 1, "ring epoch"},
    };
    for (int i = 0; i < 3 + N_RING; i++) {
        if (take(o[i], spec[i].view, spec[i].count, spec[i].size, spec[i].code, spec[i].w,
                 spec[i].what) < 0) {
            kernel_release(k);
            return -1;
        }
        k->held = i + 1;
    }
    k->counts = PyMem_Malloc((size_t)m * sizeof(double));
    if (k->counts == NULL) {
        kernel_release(k);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *kernel_frame(Kernel *k, PyObject *const *args, Py_ssize_t nargs)
{
    /* frame(pending, data, last_seq) -> None | (seq, flags, t_us, raw, hb or None)
       data ends the one DATA frame pending with its delimiter; hb is None when the frame
       needs the general path's per-value checks (device saturation flag, bad light). */
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "frame(pending: bytes, data: bytes, last_seq: int)");
        return NULL;
    }
    if (k->counts == NULL) {
        PyErr_SetString(PyExc_ValueError, "Kernel not initialised");
        return NULL;
    }
    long last = PyLong_AsLong(args[2]);
    if (last == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *pend = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t np_ = PyBytes_GET_SIZE(args[0]), nd = PyBytes_GET_SIZE(args[1]);
    if (nd == 0 || data[nd - 1] != 0)
        Py_RETURN_NONE;
    /* COBS adds one byte in 254 and one more: anything far longer is not one frame */
    Py_ssize_t total = np_ + nd, most = k->length + k->length / 128 + 16;
    if (total > most + 1)
        Py_RETURN_NONE;
    const unsigned char *buf = data;
    if (np_) {
        if (k->scratch_cap < total) {
            unsigned char *s = PyMem_Realloc(k->scratch, (size_t)most + 1);
            if (s == NULL)
                return PyErr_NoMemory();
            k->scratch = s;
            k->scratch_cap = most + 1;
        }
        memcpy(k->scratch, pend, (size_t)np_);
        memcpy(k->scratch + np_, data, (size_t)nd);
        buf = k->scratch;
    }
    Py_ssize_t enc = total - 1; /* without the delimiter */
    if (memchr(buf, 0, (size_t)enc) != NULL)
        Py_RETURN_NONE; /* more than one frame, or a delimiter inside */
    PyObject *raw = PyBytes_FromStringAndSize(NULL, k->length);
    if (raw == NULL)
        return NULL;
    unsigned char *r = (unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t len = cobs_decode(buf, enc, r, k->length);
    if (len != k->length || memcmp(r + 8, k->head, 3) != 0 ||
        crc_ccitt(r, len - 2) != (uint16_t)(r[len - 2] | (r[len - 1] << 8)) || r[0] != 1) {
        Py_DECREF(raw);
        Py_RETURN_NONE;
    }
    long seq = r[2] | (r[3] << 8);
    if (seq != ((last + 1) & 0xFFFF)) {
        Py_DECREF(raw);
        Py_RETURN_NONE;
    }
    int flags = r[1];
    uint32_t t_us = (uint32_t)r[4] | ((uint32_t)r[5] << 8) | ((uint32_t)r[6] << 16) |
                    ((uint32_t)r[7] << 24);
    const Py_ssize_t m = k->n_ch * k->n_wl;
    int clean = !(flags & 1);
    for (Py_ssize_t i = 0; i < m; i++) {
        const unsigned char *p = r + 12 + 4 * i;
        int32_t c = (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                              ((uint32_t)p[3] << 24));
        double x = (double)c;
        k->counts[i] = x;
        if (!(x > k->lo) || (k->check_hi && !(x < k->hi)))
            clean = 0;
    }
    PyObject *hb;
    if (clean) {
        hb = PyBytes_FromStringAndSize(NULL, 3 * k->n_ch * (Py_ssize_t)sizeof(double));
        if (hb == NULL) {
            Py_DECREF(raw);
            return NULL;
        }
        mbll(k->log_i0.buf, k->P.buf, k->counts, k->od.buf, (double *)PyBytes_AS_STRING(hb), 1,
             k->n_ch, k->n_wl);
    } else {
        hb = Py_NewRef(Py_None);
    }
    PyObject *out = Py_BuildValue("(liINN)", seq, flags, (unsigned int)t_us, raw, hb);
    return out;
}

static PyObject *kernel_store(Kernel *k, PyObject *const *args, Py_ssize_t nargs)
{
    /* store(i, t, t_dev, flags, epoch, quality, hb): ring row i % capacity from the last
       frame's counts, its hb bytes and these fields (Pipeline.store of one sample) */
    if (nargs != 7 || !PyBytes_Check(args[5]) || !PyBytes_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "store(i, t, t_dev, flags, epoch, quality, hb)");
        return NULL;
    }
    if (k->counts == NULL) {
        PyErr_SetString(PyExc_ValueError, "Kernel not initialised");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    double t = PyFloat_AsDouble(args[1]), t_dev = PyFloat_AsDouble(args[2]);
    long flags = PyLong_AsLong(args[3]), epoch = PyLong_AsLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    const Py_ssize_t n_ch = k->n_ch, m = n_ch * k->n_wl;
    if (i < 0 || PyBytes_GET_SIZE(args[5]) != n_ch ||
        PyBytes_GET_SIZE(args[6]) != 3 * n_ch * (Py_ssize_t)sizeof(double) || flags < 0 ||
        flags > 255 || epoch < INT16_MIN || epoch > INT16_MAX) {
        PyErr_SetString(PyExc_ValueError, "store: bad row");
        return NULL;
    }
    i %= k->capacity;
    ((double *)k->ring[R_T].buf)[i] = t;
    ((double *)k->ring[R_TDEV].buf)[i] = t_dev;
    memcpy((double *)k->ring[R_RAW].buf + i * m, k->counts, (size_t)m * sizeof(double));
    memcpy((double *)k->ring[R_HB].buf + i * 3 * n_ch, PyBytes_AS_STRING(args[6]),
           (size_t)(3 * n_ch) * sizeof(double));
    memcpy((unsigned char *)k->ring[R_QUALITY].buf + i * n_ch, PyBytes_AS_STRING(args[5]),
           (size_t)n_ch);
    ((unsigned char *)k->ring[R_FLAGS].buf)[i] = (unsigned char)flags;
    ((int16_t *)k->ring[R_EPOCH].buf)[i] = (int16_t)epoch;
    Py_RETURN_NONE;
}

/* ------------------------------------------------ the hb header and its send */

/* msgpack as msgpack-python packs these Python values (the general path's packb):
   ints and lengths in their shortest form, floats as float64, str as UTF-8 */
static unsigned char *put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

static unsigned char *put_uint(unsigned char *p, uint64_t v)
{
    if (v < 128) {
        *p++ = (unsigned char)v;
        return p;
    }
    if (v < 256) {
        *p++ = 0xcc;
        return put_be(p, v, 1);
    }
    if (v < 65536) {
        *p++ = 0xcd;
        return put_be(p, v, 2);
    }
    if (v <= 0xffffffffULL) {
        *p++ = 0xce;
        return put_be(p, v, 4);
    }
    *p++ = 0xcf;
    return put_be(p, v, 8);
}

static unsigned char *put_double(unsigned char *p, double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    *p++ = 0xcb;
    return put_be(p, u, 8);
}

static unsigned char *put_raw(unsigned char *p, const char *s, Py_ssize_t n, int bin)
{
    if (!bin && n < 32) {
        *p++ = (unsigned char)(0xa0 | n);
    } else if (n < 256) {
        *p++ = bin ? 0xc4 : 0xd9;
        p = put_be(p, (uint64_t)n, 1);
    } else if (n < 65536) {
        *p++ = bin ? 0xc5 : 0xda;
        p = put_be(p, (uint64_t)n, 2);
    } else {
        *p++ = bin ? 0xc6 : 0xdb;
        p = put_be(p, (uint64_t)n, 4);
    }
    memcpy(p, s, (size_t)n);
    return p + n;
}

static unsigned char *put_seg(unsigned char *p, PyObject *segs, int i)
{
    PyObject *b = PyTuple_GET_ITEM(segs, i);
    memcpy(p, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
    return p + PyBytes_GET_SIZE(b);
}

/* args: seq, t, t_dev, label (None or str), msg, quality (bytes) */
static Py_ssize_t pack_hb_header(Kernel *k, PyObject *const *args)
{
    if (k->segs == NULL) {
        PyErr_SetString(PyExc_ValueError, "hb sender not set");
        return -1;
    }
    if (!PyBytes_Check(args[5]) || !(args[3] == Py_None || PyUnicode_Check(args[3]))) {
        PyErr_SetString(PyExc_TypeError, "hb header: label must be None or str, quality bytes");
        return -1;
    }
    unsigned long long seq = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long long msg = PyLong_AsUnsignedLongLong(args[4]);
    double t = PyFloat_AsDouble(args[1]), t_dev = PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred())
        return -1;
    const char *label = NULL;
    Py_ssize_t label_n = 0;
    if (args[3] != Py_None && (label = PyUnicode_AsUTF8AndSize(args[3], &label_n)) == NULL)
        return -1;
    Py_ssize_t need = 4 * 9 + 2 * (5 + 8) + label_n + PyBytes_GET_SIZE(args[5]);
    for (int i = 0; i < N_SEGS; i++)
        need += PyBytes_GET_SIZE(PyTuple_GET_ITEM(k->segs, i));
    if (k->hdr_cap < need) {
        unsigned char *h = PyMem_Realloc(k->hdr, (size_t)need);
        if (h == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        k->hdr = h;
        k->hdr_cap = need;
    }
    unsigned char *p = put_seg(k->hdr, k->segs, 0);
    p = put_uint(p, seq);
    p = put_seg(p, k->segs, 1);
    p = put_double(p, t);
    p = put_seg(p, k->segs, 2);
    p = put_double(p, t_dev);
    p = put_seg(p, k->segs, 3);
    if (label == NULL)
        *p++ = 0xc0;
    else
        p = put_raw(p, label, label_n, 0);
    p = put_seg(p, k->segs, 4);
    p = put_uint(p, msg);
    p = put_seg(p, k->segs, 5);
    p = put_raw(p, PyBytes_AS_STRING(args[5]), PyBytes_GET_SIZE(args[5]), 1);
    p = put_seg(p, k->segs, 6);
    return p - k->hdr;
}

static PyObject *kernel_sender(Kernel *k, PyObject *const *args, Py_ssize_t nargs)
{
    /* sender(zmq_send address, socket address, segments): the hb message goes from here
       (addresses 0: from Python again) */
    if (nargs != 3 || !PyTuple_Check(args[2]) || PyTuple_GET_SIZE(args[2]) != N_SEGS) {
        PyErr_SetString(PyExc_TypeError, "sender(zmq_send: int, socket: int, segments: tuple)");
        return NULL;
    }
    for (int i = 0; i < N_SEGS; i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(args[2], i))) {
            PyErr_SetString(PyExc_TypeError, "sender: segments must be bytes");
            return NULL;
        }
    void *f = PyLong_AsVoidPtr(args[0]), *sock = PyLong_AsVoidPtr(args[1]);
    if (PyErr_Occurred())
        return NULL;
    Py_XSETREF(k->segs, Py_NewRef(args[2]));
    k->zsend = (int (*)(void *, const void *, size_t, int))f;
    k->zsock = sock;
    Py_RETURN_NONE;
}

static PyObject *kernel_hb_header(Kernel *k, PyObject *const *args, Py_ssize_t nargs)
{
    /* hb_header(seq, t, t_dev, label, msg, quality) -> the header send_hb sends */
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "hb_header(seq, t, t_dev, label, msg, quality)");
        return NULL;
    }
    Py_ssize_t n = pack_hb_header(k, args);
    return n < 0 ? NULL : PyBytes_FromStringAndSize((const char *)k->hdr, n);
}

static PyObject *kernel_send_hb(Kernel *k, PyObject *const *args, Py_ssize_t nargs)
{
    /* send_hb(seq, t, t_dev, label, msg, quality, hb): the three frames of the sample's
       hb message (topic, header, payload), as Publisher.publish_block sends them; the
       socket never blocks (XPUB drops at its high-water mark), so the GIL stays held */
    if (nargs != 7 || !PyBytes_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "send_hb(seq, t, t_dev, label, msg, quality, hb)");
        return NULL;
    }
    if (k->zsend == NULL || k->zsock == NULL) {
        PyErr_SetString(PyExc_ValueError, "hb sender not set");
        return NULL;
    }
    Py_ssize_t n = pack_hb_header(k, args);
    if (n < 0)
        return NULL;
    if (k->zsend(k->zsock, "hb", 2, ZMQ_SNDMORE_) < 0 ||
        k->zsend(k->zsock, k->hdr, (size_t)n, ZMQ_SNDMORE_) < 0 ||
        k->zsend(k->zsock, PyBytes_AS_STRING(args[6]), (size_t)PyBytes_GET_SIZE(args[6]), 0) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef kernel_methods[] = {
    {"sender", (PyCFunction)(void (*)(void))kernel_sender, METH_FASTCALL,
     "sender(zmq_send, socket, segments): where send_hb sends, the header's fixed parts"},
    {"hb_header", (PyCFunction)(void (*)(void))kernel_hb_header, METH_FASTCALL,
     "hb_header(seq, t, t_dev, label, msg, quality) -> the hb header as send_hb packs it"},
    {"send_hb", (PyCFunction)(void (*)(void))kernel_send_hb, METH_FASTCALL,
     "send_hb(seq, t, t_dev, label, msg, quality, hb): the sample's hb message"},
    {"frame", (PyCFunction)(void (*)(void))kernel_frame, METH_FASTCALL,
     "frame(pending, data, last_seq) -> None | (seq, flags, t_us, raw, hb or None)"},
    {"store", (PyCFunction)(void (*)(void))kernel_store, METH_FASTCALL,
     "store(i, t, t_dev, flags, epoch, quality, hb): one ring row"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nirsd.daemon._lean.Kernel",
    .tp_doc = "One pipeline's NIRSB DATA frame kernel (see daemon/kernel.py).",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)kernel_init,
    .tp_dealloc = (destructor)kernel_dealloc,
    .tp_methods = kernel_methods,
};

static PyMethodDef module_methods[] = {
    {"convert", (PyCFunction)(void (*)(void))convert, METH_FASTCALL,
     "convert(log_i0, P, I, od, hb, n, n_ch, n_wl): dOD and [dHbO, dHbR, dHbT] of a block"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lean", "nirsd's compiled per-frame kernel.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__lean(void)
{
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "the frame kernel needs a little-endian host");
        return NULL;
    }
    crc_init();
    if (PyType_Ready(&KernelType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
