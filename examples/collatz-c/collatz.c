/*
 * Chorus task in C: the longest Collatz chain in a range.
 *
 * Usage (argv): collatz LO HI   with 1 <= LO < HI <= 2^32.
 * Output (stdout, one text line): "LO HI BEST STEPS\n" where BEST is the
 * smallest n in LO..HI (half-open) whose chain n -> 1 takes the most steps.
 * Bad arguments: a message on stderr and exit code 2.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int parse(const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return -1;
    *out = (uint64_t)v;
    return 0;
}

static uint64_t steps(uint64_t n) {
    uint64_t s = 0;
    while (n != 1) {
        n = (n & 1) ? 3 * n + 1 : n >> 1;
        s++;
    }
    return s;
}

int main(int argc, char **argv) {
    uint64_t lo, hi;
    if (argc != 3 || parse(argv[1], &lo) || parse(argv[2], &hi) || lo < 1 || lo >= hi ||
        hi > ((uint64_t)1 << 32)) {
        fprintf(stderr, "usage: collatz LO HI  (1 <= LO < HI <= 4294967296)\n");
        return 2;
    }
    uint64_t best = lo, best_steps = steps(lo);
    for (uint64_t n = lo + 1; n < hi; n++) {
        uint64_t s = steps(n);
        if (s > best_steps) {
            best = n;
            best_steps = s;
        }
    }
    printf("%llu %llu %llu %llu\n", (unsigned long long)lo, (unsigned long long)hi,
           (unsigned long long)best, (unsigned long long)best_steps);
    return 0;
}
