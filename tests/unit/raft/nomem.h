/*
 * Allocation failure injection for the Raft core (test_raft_nomem only): force-included into the
 * core's sources so that every malloc/calloc/realloc the core makes can be failed on demand, while
 * the harness and cmocka keep the real allocator.
 */
#ifndef SINTER_TEST_RAFT_NOMEM_H
#define SINTER_TEST_RAFT_NOMEM_H

#include <stdlib.h>
#include <string.h>

void *nomem_malloc(size_t n);
void *nomem_calloc(size_t n, size_t size);
void *nomem_realloc(void *p, size_t n);

#define malloc(n)     nomem_malloc(n)
#define calloc(n, s)  nomem_calloc(n, s)
#define realloc(p, n) nomem_realloc(p, n)

#endif
