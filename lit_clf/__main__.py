from lit_clf.cli import main

if __name__ == "__main__":
    main()
