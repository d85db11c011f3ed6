// Package conformance holds only the e2e suite's test main (e2e_test.go) and
// the go.mod that pins it with the programs of its images; see ../README.md.
package conformance
