package web_test

import (
	"testing"

	"conclave/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }
