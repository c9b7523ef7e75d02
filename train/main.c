/* The lowbit command-line program: dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("lowbit %s\n", LOWBIT_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: lowbit --version\n");
    return 2;
}
