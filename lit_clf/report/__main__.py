from lit_clf.report.cli import main

if __name__ == "__main__":
    main()
