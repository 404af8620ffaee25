from lit_clf.run.cli import main

if __name__ == "__main__":
    main()
