module hotffi/sdk/go

go 1.19
