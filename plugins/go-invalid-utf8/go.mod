module htlcgate.dev/plugins/go-invalid-utf8

go 1.24

require htlcgate.dev/sdk/go v0.0.0

replace htlcgate.dev/sdk/go => ../../sdk/go
