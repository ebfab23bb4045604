module hotffi/examples/go

go 1.19

require hotffi/sdk/go v0.0.0

// The SDK lives in this repository: no module proxy is needed to build.
replace hotffi/sdk/go => ../../sdk/go
