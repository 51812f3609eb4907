// Package callerid normalises caller numbers (CLI, ANI) to E.164 and detects withheld callers.
package callerid
