// Package crm looks callers up in CRM sources (HTTP, PostgreSQL, CSV) through a cache (in-process LRU, Redis).
package crm
