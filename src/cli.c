// cli.c — helpers shared by the command entry points.
#include <string.h>

#include "cli.h"

int wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}
