// cli.h — one entry point per `aoe <command>`; each takes the arguments after the command name,
// handles --help itself and returns the process exit code (2 = usage or bad input).
#ifndef AOE_CLI_H
#define AOE_CLI_H

int cmd_train(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_analyze(int argc, char **argv);

// True if any argument is -h or --help.
int wants_help(int argc, char **argv);

#endif
