/* See testproc.h. */
#include "testproc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t sinter_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sinter_test_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int sinter_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

void sinter_test_kill9(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

int sinter_test_stop(pid_t *pid, unsigned timeout_ms)
{
    if (*pid <= 0) {
        return 0;
    }
    kill(*pid, SIGTERM);
    uint64_t end = sinter_test_now_ms() + timeout_ms;
    while (sinter_test_now_ms() < end) {
        int ws = 0;
        if (waitpid(*pid, &ws, WNOHANG) == *pid) {
            *pid = 0;
            return ws; /* 0 exactly when it exited with status 0 */
        }
        sinter_test_sleep_ms(50);
    }
    sinter_test_kill9(pid);
    return -1;
}

long sinter_test_file_size(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

int sinter_test_count_lines(const char *path, long from, const char *a, const char *b)
{
    char line[2048];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    fseek(f, from, SEEK_SET);
    int count = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL)) {
            count++;
        }
    }
    fclose(f);
    return count;
}
