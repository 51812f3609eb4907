package ari

// For the external (ari_test) tests.
var (
	RaceEnabled = raceEnabled
	Overloaded  = overloaded
)
