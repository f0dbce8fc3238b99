/*
 * libFuzzer target for the coordinator's replicated command decoder (tc/command.h).
 *
 * Every raft entry of the coordinator is one command, decoded by each replica's state machine;
 * a replica that mis-reads one diverges from the others. So: any input must either be refused
 * with an error code, or decode into a command that encodes back to exactly the input bytes
 * (the format has one spelling), with sinter_tc_cmd_encoded_size() agreeing. ASan/UBSan catch any
 * read past the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sinter/error.h"
#include "tc/command.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Decode from an exact-size heap copy so ASan flags any overread. */
    uint8_t *buf = malloc(size != 0 ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    if (size != 0) {
        memcpy(buf, data, size);
    }
    struct sinter_tc_cmd *c = malloc(sizeof *c); /* large (BRANCH_RESULTS holds 64 outcomes) */
    if (c == NULL) {
        free(buf);
        return 0;
    }
    int rc = sinter_tc_cmd_decode(c, buf, size);
    if (rc == SINTER_OK) {
        if (c->version != sinter_tc_cmd_version_of(c->type)) {
            abort(); /* each type under its own version only */
        }
        size_t want = sinter_tc_cmd_encoded_size(c);
        uint8_t *out = malloc(want != 0 ? want : 1);
        size_t len = 0;
        if (out == NULL || want != size || sinter_tc_cmd_encode(c, out, want, &len) != SINTER_OK ||
            len != size || memcmp(out, buf, size) != 0) {
            abort(); /* accepted input must re-encode byte for byte */
        }
        free(out);
    } else if (rc <= SINTER_OK || rc >= SINTER_ERROR_COUNT) {
        abort(); /* refusals are defined error codes */
    }
    free(c);
    free(buf);
    return 0;
}
