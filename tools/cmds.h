/*
 * cmds.h - the subcommands of the pqshim tool, one file each.
 * Each takes argv starting at the subcommand's name and returns the exit code.
 */
#ifndef PQSHIM_CMDS_H
#define PQSHIM_CMDS_H

#include "segment.h"
#include "policy.h"

int cmd_run(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_serve(int argc, char **argv);

int cmd_ls(int argc, char **argv);
int cmd_rm(int argc, char **argv);

#endif
