/*
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests of /metrics (unit
 * and integration). Header-only (static functions) so any test can include it.
 *
 * prom_check() checks, line by line: every sample line is NAME{LABELS} VALUE (or NAME VALUE) with
 * a valid metric name, quoted label values and a number; every sample belongs to a family
 * announced before it by "# HELP" and then "# TYPE"; counters end in _total; no series appears
 * twice; a histogram's buckets are cumulative, end with le="+Inf", and that bucket equals _count.
 * prom_value() finds one series' value.
 */
#ifndef SINTER_PROMTEXT_H
#define SINTER_PROMTEXT_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Error messages are cut to the caller's buffer on purpose (gcc's warning; clang has none). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define PROM_MAX_FAMILIES 128
#define PROM_MAX_SERIES   4096

static inline bool prom_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static inline size_t prom_name_len(const char *p)
{
    size_t n = 0;
    while (prom_name_char(p[n], n == 0)) {
        n++;
    }
    return n;
}

/* 0 when text is valid; otherwise 1 with a message naming the line in err. */
static inline int prom_check(const char *text, char *err, size_t errlen)
{
    char fam[PROM_MAX_FAMILIES][96];
    char type[PROM_MAX_FAMILIES][16];
    int nfam = 0;
    char(*series)[256] = calloc(PROM_MAX_SERIES, 256);
    int nser = 0;
    char help_for[96] = "";
    double last_bucket = -1, inf_bucket = -1;
    char hist_base[160] = "";
    int lineno = 0, rc = 0;
    const char *p = text;
#define PROM_FAIL(...)                                                                             \
    do {                                                                                           \
        char m_[400];                                                                              \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        snprintf(err, errlen, "line %d: %s", lineno, m_);                                          \
        rc = 1;                                                                                    \
        goto out;                                                                                  \
    } while (0)
    if (series == NULL) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        if (nl == NULL) {
            lineno++;
            PROM_FAIL("last line lacks its newline");
        }
        char line[512];
        size_t len = (size_t)(nl - p);
        lineno++;
        if (len >= sizeof line) {
            PROM_FAIL("line too long");
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (len == 0) {
            continue;
        }
        if (strncmp(line, "# HELP ", 7) == 0) {
            size_t n = prom_name_len(line + 7);
            if (n == 0 || n >= sizeof help_for || line[7 + n] != ' ' || line[8 + n] == '\0') {
                PROM_FAIL("bad HELP line");
            }
            memcpy(help_for, line + 7, n);
            help_for[n] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            size_t n = prom_name_len(line + 7);
            if (n == 0 || strncmp(line + 7, help_for, n) != 0 || help_for[n] != '\0') {
                PROM_FAIL("TYPE without a HELP line for the same name just before");
            }
            const char *t = line + 8 + n;
            if (line[7 + n] != ' ' || (strcmp(t, "counter") != 0 && strcmp(t, "gauge") != 0 &&
                                       strcmp(t, "histogram") != 0 && strcmp(t, "summary") != 0 &&
                                       strcmp(t, "untyped") != 0)) {
                PROM_FAIL("bad TYPE");
            }
            for (int i = 0; i < nfam; i++) {
                if (strcmp(fam[i], help_for) == 0) {
                    PROM_FAIL("family %s announced twice", help_for);
                }
            }
            if (strcmp(t, "counter") == 0 && (n < 6 || strcmp(help_for + n - 6, "_total") != 0)) {
                PROM_FAIL("counter %s does not end in _total", help_for);
            }
            if (nfam == PROM_MAX_FAMILIES) {
                PROM_FAIL("too many families");
            }
            snprintf(fam[nfam], sizeof fam[nfam], "%s", help_for);
            snprintf(type[nfam], sizeof type[nfam], "%s", t);
            nfam++;
            help_for[0] = '\0';
            continue;
        }
        if (line[0] == '#') {
            continue; /* other comments are allowed */
        }
        size_t n = prom_name_len(line);
        if (n == 0) {
            PROM_FAIL("sample line does not start with a metric name");
        }
        char name[128];
        if (n >= sizeof name) {
            PROM_FAIL("name too long");
        }
        memcpy(name, line, n);
        name[n] = '\0';
        const char *q = line + n;
        char le[32] = "";
        if (*q == '{') {
            q++;
            while (*q != '}') {
                size_t ln = prom_name_len(q);
                if (ln == 0 || q[ln] != '=' || q[ln + 1] != '"') {
                    PROM_FAIL("bad label");
                }
                bool is_le = ln == 2 && strncmp(q, "le", 2) == 0;
                q += ln + 2;
                const char *v = q;
                while (*q != '"' && *q != '\0') {
                    q += *q == '\\' && q[1] != '\0' ? 2 : 1;
                }
                if (*q != '"') {
                    PROM_FAIL("unterminated label value");
                }
                if (is_le && (size_t)(q - v) < sizeof le) {
                    memcpy(le, v, (size_t)(q - v));
                    le[q - v] = '\0';
                }
                q++;
                if (*q == ',') {
                    q++;
                } else if (*q != '}') {
                    PROM_FAIL("labels must be separated by ','");
                }
            }
            q++;
        }
        if (*q != ' ' || q[1] == '\0') {
            PROM_FAIL("no value after the series");
        }
        char *end = NULL;
        double v = strtod(q + 1, &end);
        if (end == q + 1 || (*end != '\0' && *end != ' ')) {
            PROM_FAIL("value is not a number");
        }
        /* Which family? The name itself, or a histogram's _bucket/_sum/_count. */
        int f = -1;
        const char *suffix = "";
        for (int i = 0; i < nfam && f < 0; i++) {
            size_t fl = strlen(fam[i]);
            if (strcmp(fam[i], name) == 0) {
                f = i;
            } else if (strcmp(type[i], "histogram") == 0 && strncmp(name, fam[i], fl) == 0 &&
                       (strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                        strcmp(name + fl, "_count") == 0)) {
                f = i;
                suffix = name + fl;
            }
        }
        if (f < 0) {
            PROM_FAIL("sample %s has no HELP/TYPE before it", name);
        }
        if (strcmp(type[f], "histogram") == 0) {
            if (strcmp(suffix, "_bucket") == 0) {
                if (le[0] == '\0') {
                    PROM_FAIL("bucket without le");
                }
                if (strcmp(hist_base, fam[f]) != 0) {
                    snprintf(hist_base, sizeof hist_base, "%s", fam[f]);
                    last_bucket = -1;
                    inf_bucket = -1;
                }
                if (v < last_bucket) {
                    PROM_FAIL("histogram buckets not cumulative");
                }
                last_bucket = v;
                if (strcmp(le, "+Inf") == 0) {
                    inf_bucket = v;
                }
            } else if (strcmp(suffix, "_count") == 0) {
                if (inf_bucket < 0 || inf_bucket != v) {
                    PROM_FAIL("histogram _count differs from its le=\"+Inf\" bucket");
                }
            } else if (suffix[0] == '\0') {
                PROM_FAIL("histogram sample without _bucket/_sum/_count");
            }
        }
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(q - line), line);
        for (int i = 0; i < nser; i++) {
            if (strcmp(series[i], key) == 0) {
                PROM_FAIL("series %s appears twice", key);
            }
        }
        if (nser < PROM_MAX_SERIES) {
            snprintf(series[nser++], 256, "%s", key);
        }
    }
out:
    free(series);
    return rc;
#undef PROM_FAIL
}

/* Value of the series spelled exactly `series` (e.g. "x_total{a=\"1\"}"): 0 and *v, or -1. */
static inline int prom_value(const char *text, const char *series, double *v)
{
    size_t n = strlen(series);
    const char *p = text;
    while (p != NULL && *p != '\0') {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            *v = strtod(p + n + 1, NULL);
            return 0;
        }
        p = strchr(p, '\n');
        if (p != NULL) {
            p++;
        }
    }
    return -1;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif /* SINTER_PROMTEXT_H */
