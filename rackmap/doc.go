package rackmap
