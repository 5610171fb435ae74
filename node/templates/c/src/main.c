/*
 * {{name}}: a Chorus task in C.
 *
 * Input (stdin): any bytes. Output (stdout, one text line): "LINES WORDS BYTES\n",
 * counted as wc(1) does (a word is a run of bytes that are not white space).
 * A read error: a message on stderr and exit code 2.
 *
 * Replicas compare outputs bit for bit, so the task must be a pure function
 * of its input and arguments (argv).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>

int main(void) {
    uint64_t lines = 0, words = 0, bytes = 0;
    int in_word = 0;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (buf[i] == '\n') lines++;
            if (isspace(buf[i])) {
                in_word = 0;
            } else if (!in_word) {
                in_word = 1;
                words++;
            }
        }
        bytes += n;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "cannot read the input\n");
        return 2;
    }
    printf("%llu %llu %llu\n", (unsigned long long)lines, (unsigned long long)words,
           (unsigned long long)bytes);
    return 0;
}
