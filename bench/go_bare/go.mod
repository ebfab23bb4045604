module go_bare

go 1.19
