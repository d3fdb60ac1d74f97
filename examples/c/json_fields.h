/*
 * Just enough JSON for these examples and tests: reading an integer or a string field of a
 * flat JSON object such as {"a": 3, "b": 4}. A real program would use a JSON library; toolmesh
 * hands over and takes JSON as UTF-8 strings, so any will do.
 */
#ifndef TOOLMESH_EXAMPLE_JSON_FIELDS_H
#define TOOLMESH_EXAMPLE_JSON_FIELDS_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Points just past `"key":` (and any blanks after it) in `json`, or NULL. */
static inline const char *json_field(const char *json, const char *key) {
  size_t key_length = strlen(key);
  for (const char *at = strchr(json, '"'); at != NULL; at = strchr(at + 1, '"')) {
    if (strncmp(at + 1, key, key_length) != 0 || at[1 + key_length] != '"') continue;
    const char *after = at + 2 + key_length;
    while (*after == ' ' || *after == '\n' || *after == '\t' || *after == '\r') after++;
    if (*after != ':') continue;
    after++;
    while (*after == ' ' || *after == '\n' || *after == '\t' || *after == '\r') after++;
    return after;
  }
  return NULL;
}

/* Reads the integer field `key`; false when it is missing or not an integer. */
static inline bool json_int(const char *json, const char *key, long long *out) {
  const char *value = json_field(json, key);
  if (value == NULL) return false;
  char *end = NULL;
  long long parsed = strtoll(value, &end, 10);
  if (end == value) return false;
  *out = parsed;
  return true;
}

/* Copies the string field `key` (without escapes) into `out`; false when it is missing, not a
 * string, or longer than `size - 1` bytes. */
static inline bool json_string(const char *json, const char *key, char *out, size_t size) {
  const char *value = json_field(json, key);
  if (value == NULL || *value != '"') return false;
  const char *end = strchr(value + 1, '"');
  if (end == NULL || (size_t)(end - value - 1) >= size) return false;
  memcpy(out, value + 1, (size_t)(end - value - 1));
  out[end - value - 1] = '\0';
  return true;
}

#endif
