# Zero-copy access to Arrow columns through the Arrow C Data Interface.
#
# Header-only (no arrow.pyx): every kernel module cimports these inline helpers, so
# no module depends on another at run time. A caller keeps the PyCapsules returned by
# __arrow_c_array__ alive for as long as it reads a Column filled from them.
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t
from libc.string cimport memcmp, strcmp
from cpython.pycapsule cimport PyCapsule_GetPointer

cdef extern from "arrow_c_data.h" nogil:
    struct ArrowSchema:
        const char* format
        const char* name
        const char* metadata
        int64_t flags
        int64_t n_children
        ArrowSchema** children
        ArrowSchema* dictionary
        void (*release)(ArrowSchema*)
        void* private_data

    struct ArrowArray:
        int64_t length
        int64_t null_count
        int64_t offset
        int64_t n_buffers
        int64_t n_children
        const void** buffers
        ArrowArray** children
        ArrowArray* dictionary
        void (*release)(ArrowArray*)
        void* private_data

# Column kinds
cdef enum:
    K_F64 = 1      # "g"  float64
    K_I64 = 2      # "l"  int64, and timestamps "tsu:..." (their int64 values)
    K_STR = 3      # "u"  utf8 (int32 offsets)
    K_LSTR = 4     # "U"  large utf8 (int64 offsets)
    K_F32 = 5      # "f"  float32
    K_I32 = 6      # "i"  int32

ctypedef struct StrCol:
    const uint8_t* validity
    int64_t offset
    const int32_t* off32      # one of off32 / off64 is set
    const int64_t* off64
    const char* chars

ctypedef struct Column:
    int kind
    int64_t length
    int64_t offset            # element offset (sliced arrays), already includes the parent's
    const uint8_t* validity   # NULL when the column has no nulls
    const void* values        # fixed-width values; index with offset added
    StrCol s                  # strings: the column itself, or a dictionary's values
    int index_width           # dictionary-encoded: 1, 2, 4 or 8 (indices in values); else 0


cdef inline bint col_valid(const Column* c, int64_t i) noexcept nogil:
    cdef int64_t j
    if c.validity == NULL:
        return True
    j = i + c.offset
    return (c.validity[j >> 3] >> (j & 7)) & 1


cdef inline double col_f64(const Column* c, int64_t i) noexcept nogil:
    if c.kind == K_F64:
        return (<const double*>c.values)[i + c.offset]
    if c.kind == K_F32:
        return (<const float*>c.values)[i + c.offset]
    if c.kind == K_I64:
        return <double>(<const int64_t*>c.values)[i + c.offset]
    return <double>(<const int32_t*>c.values)[i + c.offset]


cdef inline int64_t col_i64(const Column* c, int64_t i) noexcept nogil:
    if c.kind == K_I64:
        return (<const int64_t*>c.values)[i + c.offset]
    if c.kind == K_I32:
        return (<const int32_t*>c.values)[i + c.offset]
    return <int64_t>col_f64(c, i)


cdef inline int64_t _dict_index(const Column* c, int64_t i) noexcept nogil:
    cdef int64_t j = i + c.offset
    if c.index_width == 4:
        return (<const int32_t*>c.values)[j]
    if c.index_width == 1:
        return (<const int8_t*>c.values)[j]
    if c.index_width == 2:
        return (<const int16_t*>c.values)[j]
    return (<const int64_t*>c.values)[j]


cdef inline const char* col_str(const Column* c, int64_t i, int64_t* size) noexcept nogil:
    """Pointer to row i's string bytes (dictionary resolved); its byte length in size."""
    cdef int64_t j, lo, hi
    if c.index_width:
        j = _dict_index(c, i) + c.s.offset
    else:
        j = i + c.s.offset
    if c.s.off32 != NULL:
        lo = c.s.off32[j]
        hi = c.s.off32[j + 1]
    else:
        lo = c.s.off64[j]
        hi = c.s.off64[j + 1]
    size[0] = hi - lo
    return c.s.chars + lo


cdef inline bint col_str_eq(const Column* c, int64_t i, int64_t j) noexcept nogil:
    """Rows i and j hold the same string (two nulls are equal, null != any string)."""
    cdef bint vi = col_valid(c, i), vj = col_valid(c, j)
    cdef int64_t ni, nj
    cdef const char* pi
    cdef const char* pj
    if not vi or not vj:
        return vi == vj
    if c.index_width and _dict_index(c, i) == _dict_index(c, j):
        return True
    pi = col_str(c, i, &ni)
    pj = col_str(c, j, &nj)
    return ni == nj and memcmp(pi, pj, ni) == 0


cdef inline int _fill_str(StrCol* s, const char* fmt, ArrowArray* a, int64_t offset) except -1:
    s.validity = <const uint8_t*>a.buffers[0] if a.null_count != 0 else NULL
    s.offset = offset
    s.off32 = NULL
    s.off64 = NULL
    if strcmp(fmt, b"u") == 0:
        s.off32 = <const int32_t*>a.buffers[1]
    elif strcmp(fmt, b"U") == 0:
        s.off64 = <const int64_t*>a.buffers[1]
    else:
        raise TypeError(f"unsupported string format {fmt!r} (expected utf8 or large_utf8)")
    s.chars = <const char*>a.buffers[2]
    return 0


cdef inline int fill_column(ArrowSchema* schema, ArrowArray* array, int64_t parent_offset,
                            Column* c) except -1:
    """Describe one Arrow array as a Column (no copy). Raises TypeError on other types."""
    cdef const char* fmt = schema.format
    c.length = array.length
    c.offset = parent_offset + array.offset
    c.validity = <const uint8_t*>array.buffers[0] if array.null_count != 0 else NULL
    c.index_width = 0
    c.values = NULL
    if schema.dictionary != NULL:
        if fmt[0] == b"c":
            c.index_width = 1
        elif fmt[0] == b"s":
            c.index_width = 2
        elif fmt[0] == b"i":
            c.index_width = 4
        elif fmt[0] == b"l":
            c.index_width = 8
        else:
            raise TypeError(f"unsupported dictionary index format {fmt!r}")
        c.values = array.buffers[1]
        _fill_str(&c.s, schema.dictionary.format, array.dictionary, array.dictionary.offset)
        c.kind = K_STR
        return 0
    if strcmp(fmt, b"g") == 0:
        c.kind = K_F64
    elif strcmp(fmt, b"l") == 0 or (fmt[0] == b"t" and fmt[1] == b"s"):
        c.kind = K_I64
    elif strcmp(fmt, b"f") == 0:
        c.kind = K_F32
    elif strcmp(fmt, b"i") == 0:
        c.kind = K_I32
    elif strcmp(fmt, b"u") == 0 or strcmp(fmt, b"U") == 0:
        c.kind = K_STR if fmt[0] == b"u" else K_LSTR
        _fill_str(&c.s, fmt, array, c.offset)
        # the string's own validity is the column's validity
        return 0
    else:
        raise TypeError(f"unsupported Arrow format {fmt!r} for column {schema.name!r}")
    c.values = array.buffers[1]
    return 0


cdef inline int64_t find_child(ArrowSchema* schema, str name) except -2:
    """Index of the struct child called name, or -1."""
    cdef bytes bname = name.encode()
    cdef int64_t k
    for k in range(schema.n_children):
        if schema.children[k].name != NULL and strcmp(schema.children[k].name, bname) == 0:
            return k
    return -1


cdef inline int import_capsules(tuple caps, ArrowSchema** schema, ArrowArray** array) except -1:
    """Borrow the structs behind the (schema, array) capsules of __arrow_c_array__()."""
    schema[0] = <ArrowSchema*>PyCapsule_GetPointer(caps[0], "arrow_schema")
    array[0] = <ArrowArray*>PyCapsule_GetPointer(caps[1], "arrow_array")
    if strcmp(schema[0].format, b"+s") != 0:
        raise TypeError("expected a record batch (Arrow struct array)")
    return 0


cdef inline int batch_column(ArrowSchema* schema, ArrowArray* array, str name,
                             Column* c) except -1:
    """Fill c with the batch's column called name; KeyError when it is missing."""
    cdef int64_t k = find_child(schema, name)
    if k < 0:
        raise KeyError(f"column {name!r} is missing")
    return fill_column(schema.children[k], array.children[k], array.offset, c)


cdef inline int64_t segment_starts(const Column* symbol, const Column* interval, int64_t n,
                                   int64_t* out) noexcept nogil:
    """Write the start row of every (symbol, interval) run into out (capacity n + 1), then n.

    Returns the number of segments. Rows must be sorted by (symbol, interval, ts)."""
    cdef int64_t i, k = 0
    if n == 0:
        out[0] = 0
        return 0
    out[k] = 0
    k += 1
    for i in range(1, n):
        if not col_str_eq(symbol, i, i - 1) or (
            interval != NULL and not col_str_eq(interval, i, i - 1)
        ):
            out[k] = i
            k += 1
    out[k] = n
    return k
