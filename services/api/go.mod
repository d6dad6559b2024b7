module github.com/storeprov/storeprov/services/api

go 1.26.0

require (
	github.com/storeprov/storeprov/gen v0.0.0
	github.com/storeprov/storeprov/pkg v0.0.0
)

replace (
	github.com/storeprov/storeprov/gen => ../../gen
	github.com/storeprov/storeprov/pkg => ../../pkg
)
