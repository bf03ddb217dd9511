/* The Arrow C Data Interface structs, as specified by Apache Arrow
 * (https://arrow.apache.org/docs/format/CDataInterface.html). Declared here so that
 * stockbatch never links libarrow: data arrives through __arrow_c_array__ PyCapsules. */
#ifndef STOCKBATCH_ARROW_C_DATA_H
#define STOCKBATCH_ARROW_C_DATA_H

#include <stdint.h>

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema** children;
  struct ArrowSchema* dictionary;
  void (*release)(struct ArrowSchema*);
  void* private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  struct ArrowArray** children;
  struct ArrowArray* dictionary;
  void (*release)(struct ArrowArray*);
  void* private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */
#endif /* STOCKBATCH_ARROW_C_DATA_H */
