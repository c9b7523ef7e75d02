/* Names to indices: an open-addressing hash table over strings the caller keeps
 * alive (tensor names, metadata keys). Readers use it to find duplicates and look
 * names up in O(1), so a hostile file with many entries costs linear time. */
#ifndef LOWBIT_IO_NAME_INDEX_H
#define LOWBIT_IO_NAME_INDEX_H

#include <stddef.h>

typedef struct lb_name_index {
    size_t cap;        /* a power of two, at least twice the count */
    size_t count;
    const char **names;
    size_t *values;
} lb_name_index;

/* Room for n names to start with (it grows); 0 on success, -1 when out of memory. */
int lb_name_index_init(lb_name_index *ix, size_t n);
void lb_name_index_free(lb_name_index *ix);
/* Adds name -> value. Returns 1 if added, 0 if the name is already there (its value
 * goes to *existing when non-NULL), -1 when out of memory. */
int lb_name_index_add(lb_name_index *ix, const char *name, size_t value, size_t *existing);
/* 1 and the value when found, 0 when not. */
int lb_name_index_get(const lb_name_index *ix, const char *name, size_t *value);

#endif
