// swift-tools-version: 6.2
// A package that uses ACON the way any other package would: by URL and version.
//
// `scripts/check_consumer.sh` (run by the test command) builds it against a tagged clone of
// the checkout by setting ACON_PACKAGE_URL; in your own package write the repository's URL.
import Foundation
import PackageDescription

let aconURL =
  ProcessInfo.processInfo.environment["ACON_PACKAGE_URL"] ?? "https://github.com/acon-swift/acon"

let package = Package(
  name: "TinyACON",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(url: aconURL, from: "0.4.0")
  ],
  targets: [
    .executableTarget(
      name: "TinyACON",
      dependencies: [.product(name: "ACON", package: "acon")])
  ]
)
