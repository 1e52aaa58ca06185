package io.leasehold.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code java -jar leasehold.jar}: the operator's command line. */
@Command(
    name = "leasehold",
    mixinStandardHelpOptions = true,
    versionProvider = VersionProvider.class,
    description = "Serializes Terraform runs on shared state inside Kubernetes.",
    subcommands = {RunCommand.class, DemoCommand.class, RemoveFinalizersCommand.class})
public final class Main implements Runnable {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }

  public static CommandLine commandLine() {
    return new CommandLine(new Main())
        .setCaseInsensitiveEnumValuesAllowed(true)
        .setExecutionExceptionHandler(
            (e, commandLine, parsed) -> {
              // Users get the reason, not a stack trace; the log has the details.
              commandLine.getErr().println("error: " + e.getMessage());
              commandLine.getErr().flush();
              return 1;
            });
  }

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(), "Missing a command: try 'run'");
  }
}
