"""The local broker's files (Maven pom of the jars, server.properties template, log4j2
config), installed as the package data of `streams.broker_files`."""
