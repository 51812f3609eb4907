// Package callerid normalises caller numbers (CLI, ANI) to E.164 and detects withheld callers.
//
// Parsing uses libphonenumber's metadata (nyaruka/phonenumbers) with a default
// region (numbers.default_region, or per dialled number numbers.profiles).
// Before parsing, the raw value is reduced to what a phone number may hold:
// the user part of tel:/sip:/sips: URIs without parameters, Unicode decimal
// digits as ASCII, a leading '+', and ( ) - . / and spaces; letters, control
// characters, more than 18 digits or more than 128 bytes are invalid. An
// international prefix the region does not use itself (00 from the US, 011
// elsewhere) is read as '+'. A number is accepted only when IsValidNumber
// holds: that includes reserved fictional ranges (+1 415 555 01xx) but rejects
// impossible national forms (a US number starting with 0) instead of
// misreading them. Results are memoised in a bounded LRU keyed by region+raw.
//
// Metrics: callpop_numbers_parses_total{result,memo}.
package callerid
