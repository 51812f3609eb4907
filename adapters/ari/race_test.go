//go:build race

package ari

const raceEnabled = true
