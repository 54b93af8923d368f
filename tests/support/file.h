/* file: whole-file reads and writes, and polling a file (a child's log) until
 * some text shows up in it. Every wait is bounded by its timeout. Knows
 * nothing of who writes the files. */
#ifndef SUNDYNIX_TEST_FILE_H
#define SUNDYNIX_TEST_FILE_H

#include <stdbool.h>
#include <stddef.h>

/* The file's contents, NUL-terminated (caller frees), or NULL when it cannot
 * be read. len may be NULL. */
char *h_read_file(const char *path, size_t *len);
/* Fails the test when the file cannot be written. */
void h_write_file(const char *path, const char *data, size_t len);
/* How often needle occurs in the file (0 when it cannot be read). */
size_t h_file_count(const char *path, const char *needle);
bool h_file_contains(const char *path, const char *needle);
/* Waits until the file contains needle at least n times. */
bool h_wait_file_count(const char *path, const char *needle, size_t n, int timeout_ms);
bool h_wait_file(const char *path, const char *needle, int timeout_ms);
/* The whole line of the file holding needle (caller frees), or NULL. */
char *h_file_line(const char *path, const char *needle);

#endif
