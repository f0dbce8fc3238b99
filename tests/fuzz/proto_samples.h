/* A set of valid messages covering every message code, shared by the unit tests, the fuzz corpus
 * generator and the fuzz corpus replay. */
#ifndef SINTER_TESTS_PROTO_SAMPLES_H
#define SINTER_TESTS_PROTO_SAMPLES_H

#include <stddef.h>

#include "sinter/proto.h"

/* Number of samples. */
size_t proto_sample_count(void);

/* Fills *m with sample i (< proto_sample_count()). Strings and data point to static storage. */
void proto_sample(size_t i, struct sinter_proto_msg *m);

#endif
