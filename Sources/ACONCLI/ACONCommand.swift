import ArgumentParser

/// The `acon` command-line tool: train, evaluate, inspect and benchmark ACON networks.
@main
struct ACONCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "acon",
    abstract: "Train, evaluate and benchmark networks with the ACON family of activations.",
    subcommands: [
      Train.self, Eval.self, Info.self, Forward.self, Compare.self, Bench.self,
      BenchActivation.self, PlotActivation.self, Plot.self, BenchOp.self, Convert.self, Export.self,
      BenchAllreduce.self,
    ],
    defaultSubcommand: Train.self)
}
