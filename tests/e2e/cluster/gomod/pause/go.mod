// A minimal pod sandbox ("pause") process, so the pause image is built here
// rather than pulled.
module fleetlattice.local/e2e/cluster/pause

go 1.25.0
