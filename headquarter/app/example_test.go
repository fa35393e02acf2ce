package app_test

import (
	"encoding/json"
	"fmt"

	"github.com/garrisonhq/garrison/headquarter/app"
)

// The API layer's path for POST /v2/apps: parse (400 or 422 on error),
// assign service ports, stamp the version, then hand tasks to a driver.
func Example() {
	env := app.Environment{Hostname: "box1"}
	a, err := app.Parse([]byte(`{"id":"ktv/account","cmd":"./account --port $PORT0","instances":2,"ports":null,"dependencies":null}`), env)
	if err != nil {
		body, _ := json.Marshal(err) // Marathon's {"message":...,"details":[...]}
		fmt.Println(string(body))
		return
	}
	a, err = app.AssignServicePorts(a, map[int]bool{10000: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	spec := app.ToSpec(a, app.TaskID(a.ID), []int{31005}, "box1")
	fmt.Println(a.ID, a.Instances, a.CPUs, a.Mem, a.PortDefinitions[0].Port, app.ServiceName(a.ID))
	fmt.Println(spec.Environment()["PORT0"], spec.Environment()["PORT_10001"])

	_, err = app.Parse([]byte(`{"id":"/ktv/web","cmd":"./web","instances":2,"constraints":[["hostname","UNIQUE"]]}`), env)
	body, _ := json.Marshal(err)
	fmt.Println(string(body))
	// Output:
	// /ktv/account 2 1 128 10001 ktv_account
	// 31005 31005
	// {"message":"Object is not valid","details":[{"path":"/constraints(0)","errors":["[\"hostname\",\"UNIQUE\"] with 2 instances needs 2 machines, which is not supported on a single machine until the Nomad driver exists"]}]}
}

func ExampleParseSelector() {
	sel, err := app.ParseSelector("env==prod, tier in (web, api), canary")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sel.Match(map[string]string{"env": "prod", "tier": "api", "canary": "true"}))
	fmt.Println(sel.Match(map[string]string{"env": "prod", "tier": "db", "canary": "true"}))
	// Output:
	// true
	// false
}
